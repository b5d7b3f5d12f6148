"""Mixed precision of a VLAE: which layers compute in 16 bits, and where values go back to float32.

The gin setting is `VLAE.precision` (gin/base.gin), one of PRECISIONS:

* 'float32': every layer computes in float32; nothing below touches the model (bit for bit the
  behaviour before the setting existed).
* 'mixed_bfloat16': the convolutions and dense layers of the encoder, the context network and the
  decoder (every Keras layer inside them, weight-norm wrappers included) get the Keras dtype
  policy 'mixed_bfloat16': their variables stay float32 (AutoCastVariables, read as bfloat16
  inside the layer's call), their floating inputs are cast to bfloat16 when called.
* 'mixed_float16': the same layers in float16 (the Keras policy 'mixed_float16'), for GPUs with
  float16 tensor cores. float16's range is narrow (largest 65504, smallest normal 2^-14), so the
  trainer scales the loss (training/loss_scaling.py); everything listed below as float32 stays
  float32. On CPUs it runs but slowly (float16 convolutions are emulated there); the training
  loop says so in one line (accelerators.py).

Below, "bfloat16" reads "the 16-bit compute dtype" for either mixed precision.

Where values are float32 again (the casts):
* the encoder's posterior head output (loc, raw scale) and its context, before softplus and before
  the posterior (encoders.py);
* the decoder's likelihood parameters (logits), before the likelihood (`VLAE.decoder_params`,
  `VLAE.decode`);
* weight norm computes g * v / ||v|| and its data-dependent init from the float32 variables and
  casts only the resulting kernel to the layer's compute dtype (weight_norm.py).
* the first author's decoder (`GatedResNetPixelCNN`) computes only its convolutions in bfloat16:
  every `TiedConv2D` casts its convolution's output to float32 before its float32 scale and bias,
  so its ELUs, gates and residual sums are float32 (bfloat16 elementwise ops are several times
  slower than float32 ones on CPU; docs/RESULTS.md, "Speed and precision").
The prior and posterior flows (TFP's MADE), their densities and log-dets, the KL, the loss, the
optimizer and the Polyak averages are never given the policy: they stay float32.

The decoders' cached samplers (`autoregress`: 'fast' sampling and the bits-back codec) read the
float32 variables outside any layer call, so they compute the decoder in float32 from the same
weights (the context map is cast to float32); the codec runs that one path on both sides, so its
probabilities are bit-identical between compression and decompression.
"""

from typing import Optional

import tensorflow as tf
import tf_keras as keras

FLOAT32 = 'float32'
MIXED_BFLOAT16 = 'mixed_bfloat16'
MIXED_FLOAT16 = 'mixed_float16'
PRECISIONS = (FLOAT32, MIXED_BFLOAT16, MIXED_FLOAT16)
_COMPUTE_DTYPES = {FLOAT32: tf.float32, MIXED_BFLOAT16: tf.bfloat16, MIXED_FLOAT16: tf.float16}


def check(precision: str) -> str:
  """Returns `precision` if it is one of PRECISIONS, else raises ValueError (one line)."""
  if precision not in PRECISIONS:
    raise ValueError(f'VLAE.precision must be one of {", ".join(repr(p) for p in PRECISIONS)}; '
                     f'got {precision!r}.')
  return precision


def compute_dtype(precision: str) -> tf.DType:
  """The dtype the networks compute in: float32, bfloat16 or float16."""
  return _COMPUTE_DTYPES[check(precision)]


def apply(network: Optional[keras.layers.Layer], precision: str):
  """Gives `network` and every Keras layer inside it the dtype policy of `precision`.

  Must run before the network is built (variables are created by build with the policy's
  variable dtype, float32, as AutoCastVariables). 'float32' leaves the network untouched.

  Args:
    network: a Keras layer (an encoder, a context network, a decoder), or None.
    precision: one of PRECISIONS.

  Returns:
    `network`.

  Raises:
    ValueError: an unknown precision, or a layer already built under another policy.
  """
  if network is None or check(precision) == FLOAT32:
    return network
  if precision == MIXED_FLOAT16:
    # Keras's own check of the devices logs a paragraph once per process; the training loop says
    # what matters in one line instead (accelerators.slow_precision_note).
    # pylint: disable-next=g-import-not-at-top
    from tf_keras.src.mixed_precision import device_compatibility_check as check_module
    check_module._logged_compatibility_check = True  # pylint: disable=protected-access
  policy = keras.mixed_precision.Policy(precision)
  # pylint: disable-next=protected-access
  for layer in network._flatten_layers(include_self=True, recursive=True):
    if layer.dtype_policy.name == precision:
      continue
    if layer.built:
      raise ValueError(f'{layer.name} is already built in {layer.dtype_policy.name}: the '
                       f'precision must be set before the first call.')
    layer._set_dtype_policy(policy)  # pylint: disable=protected-access
  return network


def to_float32(structure):
  """Casts every floating tensor of a nested structure to float32 (float32 ones are returned)."""
  return tf.nest.map_structure(
      lambda t: tf.cast(t, tf.float32) if t is not None and t.dtype.is_floating else t, structure)


def variable_dtype(variable) -> tf.DType:
  """The stored dtype of a variable, also for an AutoCastVariable read inside a layer's call."""
  return getattr(variable, 'true_dtype', variable.dtype)


def uncast_variables():
  """A context in which AutoCastVariables read as their stored dtype (float32), not bfloat16."""
  from tf_keras.src.mixed_precision import autocast_variable  # pylint: disable=g-import-not-at-top
  return autocast_variable.enable_auto_cast_variables(None)
