"""Tests of the class labels aligned with the datasets, on the real files of shared/data."""

import numpy as np
import pytest

from vlae_tf import errors
from vlae_tf.data import batching
from vlae_tf.data import datasets
from vlae_tf.data import labels


def test_match_binarized_finds_the_source_of_each_sample():
  rng = np.random.default_rng(0)
  # Mostly blank or full pixels, some grey ones, as in MNIST.
  grey = rng.choice(np.array([0, 0, 255, 40, 128, 200], np.uint8), size=(50, 12, 13))
  grey[:, 0, :] = 0
  source = rng.permutation(50)[:20]
  binary = (rng.random((20, 12, 13)) < grey[source] / 255.0).astype(np.uint8)
  matched, impossible = labels.match_binarized(binary, grey)
  np.testing.assert_array_equal(matched, source)
  np.testing.assert_array_equal(impossible, 0)
  flipped = binary.copy()
  flipped[:, 0, 0] = 1  # on where every grey image is blank: no true source
  assert (labels.match_binarized(flipped, grey)[1] > 0).all()


@pytest.mark.slow
def test_static_mnist_test_labels_match_mnist(shared_data):
  """Larochelle's test file is MNIST's t10k sorted by label: the matching must find that."""
  static = labels.load_labels('static_mnist', 'test', shared_data)
  mnist = labels.load_labels('dynamic_mnist', 'test', shared_data)
  assert len(static) == 10000
  assert np.all(np.diff(static) >= 0)  # sorted by class
  np.testing.assert_array_equal(static, np.sort(mnist))
  chosen = np.arange(0, 50000, 997)
  train = labels.load_labels('static_mnist', 'train', shared_data, indices=chosen)
  assert len(train) == len(chosen) and set(train) == set(range(10))


@pytest.mark.slow
@pytest.mark.parametrize('count', [3000, 4000, 6000, 7])
def test_even_subsets_of_the_sorted_static_mnist_test_split_reach_the_last_class(
    shared_data, count):
  static = labels.load_labels('static_mnist', 'test', shared_data)
  images = datasets.load('static_mnist', 'test', data_dir=shared_data)
  indices = batching.subset_indices(10000, count)
  chosen = static[indices]
  assert chosen[-1] == 9
  if count >= 1000:
    assert set(chosen) == set(range(10))
    shares = np.bincount(chosen, minlength=10) / count
    np.testing.assert_allclose(shares, np.bincount(static) / 10000, atol=0.002)
  # The dataset subset is exactly these images.
  subset = np.stack(list(batching.strided_subset(images, count).as_numpy_iterator()))
  every = np.stack(list(images.as_numpy_iterator()))
  np.testing.assert_array_equal(subset, every[indices])


def test_labels_of_other_datasets_align_with_their_images(shared_data):
  for name, split in [('dynamic_mnist', 'valid'), ('caltech101_silhouettes', 'test'),
                      ('caltech101_silhouettes', 'train+valid'), ('cifar10', 'test')]:
    found = labels.load_labels(name, split, shared_data)
    count = batching.cardinality(datasets.load(name, split, data_dir=shared_data))
    assert len(found) == count, (name, split)
  caltech = labels.load_labels('caltech101_silhouettes', 'train', shared_data)
  assert caltech.min() == 0 and caltech.max() == 100


def test_datasets_without_labels_say_so(shared_data):
  with pytest.raises(errors.LabelsUnavailableError, match='omniglot has no class labels'):
    labels.load_labels('omniglot', 'test', shared_data)
