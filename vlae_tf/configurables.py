"""Every module that registers gin configurables, imported in one place.

A run's gin config (the shipped gin files, <model_dir>/config.gin) names classes and functions of
these modules, so parsing it needs them imported: `gin_parsing.parse_gin` and
`run_directory.load_run_config` import this module, and no other module imports one only for its
gin registrations.
"""

# pylint: disable=unused-import
from vlae_tf import blocks
from vlae_tf import conv_flows
from vlae_tf import datasets
from vlae_tf import distribution
from vlae_tf import flows
from vlae_tf import gated_pixelcnn
from vlae_tf import likelihoods
from vlae_tf import masked
from vlae_tf import model
from vlae_tf import networks
from vlae_tf import objectives
from vlae_tf import pixelcnn
from vlae_tf import trainer
from vlae_tf import training
# pylint: enable=unused-import
