"""What a model is made of: trainable parameters per part and the decoder's window.

bin/train writes `model_summary(model)` to <model_dir>/model_summary.json at start and prints
`summary_line` of it, so that a run says which decoder it trained (e.g. 246 offsets and 382,697
decoder parameters for the first author's, 69 offsets and 2,378 for DepthLimitedPixelCNN).
"""

from typing import Any, Dict

# The parts of a `vlae.VLAE`, by the attribute that holds each, in the order of the data flow.
PARTS = ('encoder', 'posterior', 'prior', 'context_network', 'decoder')


def _trainable_parameters(layer) -> int:
  if layer is None:
    return 0
  return int(sum(int(variable.shape.num_elements()) for variable in layer.trainable_variables))


def window_summary(window) -> Dict[str, int]:
  """{"offsets", "rows_above", "columns_left"} of a window: a set of (drow, dcol) offsets of
  the pixels the output at (0, 0) sees (drow <= 0; dcol < 0 on the own row)."""
  window = list(window)
  return {'offsets': len(window),
          'rows_above': max([-drow for drow, _ in window], default=0),
          'columns_left': max([-dcol for _, dcol in window], default=0)}


def model_summary(model) -> Dict[str, Any]:
  """The trainable parameters of each part of a built VLAE, the total and the decoder's window.

  Returns:
    {"parts": {part: {"class": name or None, "trainable_parameters": n}}, "trainable_parameters":
    total, "decoder_window": window_summary (None for a decoder without `window()`), "image_shape": [H, W, C], "latent_shape": [...]}.
  """
  parts = {}
  for part in PARTS:
    layer = getattr(model, part, None)
    parts[part] = {'class': None if layer is None else type(layer).__name__,
                   'trainable_parameters': _trainable_parameters(layer)}
  window = getattr(model.decoder, 'window', None)  # None for a decoder that is not a PixelCNN
  return {'parts': parts,
          'trainable_parameters': _trainable_parameters(model),
          'decoder_window': window_summary(window()) if callable(window) else None,
          'image_shape': list(model.image_shape),
          'latent_shape': list(model.latent_shape)}


def summary_line(summary: Dict[str, Any]) -> str:
  """One line for people: parameters per part, the total, the decoder's window."""
  parts = ', '.join(f'{part.replace("_", " ")} {values["trainable_parameters"]:,}'
                    for part, values in summary['parts'].items()
                    if values['class'] is not None)
  window = summary['decoder_window']
  line = (f'model: {summary["parts"]["decoder"]["class"]} decoder; trainable parameters: '
          f'{parts} (total {summary["trainable_parameters"]:,})')
  if window is None:
    return line
  return (f'{line}; decoder window {window["offsets"]} pixels ({window["rows_above"]} rows '
          f'above, {window["columns_left"]} columns left)')
