"""Every module that registers gin configurables, imported in one place.

A run's gin config (the shipped gin files, <model_dir>/config.gin) names classes and functions of
these modules, so parsing it needs them imported: `gin_parsing.register_configurables` imports
this module by name (for `gin_parsing.parse_gin` and `run_config.load_run_config`), and no other
module imports one only for its gin registrations. It imports only modules that register gin names (`train` is
`training.settings.TrainSettings`, not the loop), so that nothing it imports can lead back to it.
"""

# pylint: disable=unused-import
from vlae_tf.data import datasets
from vlae_tf.layers import blocks
from vlae_tf.layers import masked
from vlae_tf.models import context_networks
from vlae_tf.models import conv_flows
from vlae_tf.models import encoders
from vlae_tf.models import flows
from vlae_tf.models import gated_pixelcnn
from vlae_tf.models import gated_resnet_pixelcnn
from vlae_tf.models import likelihoods
from vlae_tf.models import objectives
from vlae_tf.models import pixelcnn
from vlae_tf.models import vlae
from vlae_tf import distribution
from vlae_tf.training import settings  # `train`
from vlae_tf.training import trainer
# pylint: enable=unused-import
