"""Installs vlae_tf: the Variational Lossy Autoencoder (Chen et al., ICLR 2017) in TensorFlow 2."""

import pathlib

import setuptools

HERE = pathlib.Path(__file__).parent
# One pin for tensorflow and for the 'gpu' extra's tensorflow[and-cuda].
TENSORFLOW_VERSION = '>=2.21,<2.22'

setuptools.setup(
    name='vlae_tf',
    version='0.1.0',
    description='Variational Lossy Autoencoder (Chen et al. 2017) with TF2, '
                'TensorFlow Probability and tf.distribute.',
    long_description=(HERE / 'README.md').read_text(),
    long_description_content_type='text/markdown',
    # The gin configs (gin/ in the checkout) ship as package data in vlae_tf/gin_configs/, so that
    # a non-editable install can train: vlae_tf/configs.py finds them either way.
    packages=setuptools.find_packages(include=['vlae_tf', 'vlae_tf.*']) + ['vlae_tf.gin_configs'],
    package_dir={'vlae_tf.gin_configs': 'gin'},
    # The pretrained models (vlae_tf/pretrained/<name>/: a slim run directory and its provenance).
    package_data={'vlae_tf.gin_configs': ['*.gin', '*/*.gin'],
                  'vlae_tf.pretrained': ['*/checkpoint', '*/ckpt-*', '*/*.gin', '*/*.json']},
    python_requires='>=3.10,<3.13',
    install_requires=[
        f'tensorflow{TENSORFLOW_VERSION}',
        'tensorflow-probability>=0.25,<0.26',
        'tf-keras>=2.21,<2.22',
        'tensorflow-datasets>=4.9',
        # tensorflow-datasets imports it (through etils) without declaring it.
        'importlib_resources>=6',
        # tensorflow 2.21 no longer pulls tensorboard in, and tf.summary needs it.
        'tensorboard>=2.20',
        'gin-config>=0.5',
        'absl-py>=2.0',
        'numpy>=1.26',
        'pillow>=10',
        'scipy>=1.11',  # scipy.io.loadmat for the Caltech-101 and OMNIGLOT .mat files
        # bin/compress and bin/decompress: the ANS entropy coder of bits-back coding.
        'constriction>=0.5,<0.6',
        # The portable codec runs BLAS on one thread (its results are the same on any count).
        'threadpoolctl>=3',
    ],
    extras_require={
        # NVIDIA GPUs: TensorFlow's CUDA and cuDNN wheels, pinned like the tensorflow requirement
        # (docs/gpu.md).
        'gpu': [f'tensorflow[and-cuda]{TENSORFLOW_VERSION}'],
        # bin/inspect's linear probe.
        'inspect': ['scikit-learn>=1.3'],
        # The figures of docs/RESULTS.md that are not line plots (docs/results/speed/).
        'plots': ['matplotlib>=3.7'],
        'test': ['pytest>=8', 'pytest-xdist>=3', 'scikit-learn>=1.3'],
    },
    # Namespaced commands (bash's own `eval` and `export` would shadow bare names); in a checkout,
    # bin/<name> runs the same main.
    entry_points={'console_scripts': [
        f'vlae-{name}=vlae_tf.cli:{name}_command'
        for name in ('train', 'eval', 'sample', 'export', 'benchmark', 'reproduce', 'inspect',
                     'compress', 'decompress')]},
)
