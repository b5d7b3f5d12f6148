"""Tests of vlae_tf/models/summary.py (model_summary.json of a bin/train run: binaries_test.py)."""

from tests import doubles
from vlae_tf import gin_parsing
from vlae_tf.models import summary
from vlae_tf.models import vlae as vlae_lib


def _parameters(layer):
  return sum(int(v.shape.num_elements()) for v in layer.trainable_variables)


def test_window_summary_counts_rows_above_and_columns_left():
  window = {(0, -1), (0, -2), (-1, -1), (-1, 0), (-1, 3), (-2, 0)}
  assert summary.window_summary(window) == {'offsets': 6, 'rows_above': 2, 'columns_left': 2}
  assert summary.window_summary(frozenset()) == {'offsets': 0, 'rows_above': 0,
                                                 'columns_left': 0}


def test_the_authors_decoder_at_28x28_has_246_offsets_12_rows_and_12_columns():
  # tiny.gin keeps 2 stages; the window depends on the number of stages only.
  gin_parsing.parse_gin(['mnist_vlae.gin', 'testing/tiny.gin'],
                        ['gated_resnet_pixelcnn.GatedResNetPixelCNN.num_stages = 6'])
  model = vlae_lib.make_model()
  model.initialize(doubles.binary_images(2, shape=(28, 28, 1)))
  result = summary.model_summary(model)
  assert result['decoder_window'] == {'offsets': 246, 'rows_above': 12, 'columns_left': 12}
  assert result['parts']['decoder']['class'] == 'GatedResNetPixelCNN'
  for part in summary.PARTS:
    assert result['parts'][part]['trainable_parameters'] == _parameters(getattr(model, part))
  assert result['trainable_parameters'] == _parameters(model) == sum(
      values['trainable_parameters'] for values in result['parts'].values())
  line = summary.summary_line(result)
  assert 'GatedResNetPixelCNN decoder' in line and 'window 246 pixels' in line
  assert '\n' not in line


def test_a_pixelcnn_without_z_has_no_encoder_part():
  gin_parsing.parse_gin(['dynamic_mnist_pixelcnn.gin', 'testing/tiny.gin'])
  model = vlae_lib.make_model()
  model.initialize(doubles.binary_images(2, shape=(28, 28, 1)))
  result = summary.model_summary(model)
  assert result['parts']['encoder'] == {'class': None, 'trainable_parameters': 0}
  assert result['trainable_parameters'] == result['parts']['decoder']['trainable_parameters'] > 0
  assert 'encoder' not in summary.summary_line(result)


def test_a_decoder_without_a_window_has_none():
  model = doubles.DeterministicVLAE()  # a Dense decoder: no window()
  model.initialize(doubles.binary_images(2, shape=model.image_shape))
  result = summary.model_summary(model)
  assert result['decoder_window'] is None
  assert 'window' not in summary.summary_line(result)
