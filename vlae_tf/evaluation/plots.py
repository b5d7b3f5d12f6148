"""Line plots as PNG files with Pillow alone (no plotting library among the dependencies).

Used for the time-to-quality curve (`evaluation.evaluate_curve`, one series) and the results table's
NLL against training steps (`reproduce`, one series per run): (x, y, error) points drawn as
polylines with markers and +-error bars, nice round ticks on both axes, a legend.
"""

import math
from typing import Mapping, Optional, Sequence, Tuple

import numpy as np
from PIL import Image
from PIL import ImageDraw
from PIL import ImageFont

from vlae_tf import image_grids

Point = Tuple[float, float, Optional[float]]  # x, y, standard error of y (or None)


def nice_ticks(low: float, high: float, count: int = 6) -> list:
  """About `count` round tick values (steps of 1, 2 or 5 x 10^k) covering [low, high]."""
  if high <= low:
    high = low + 1.0
  raw = (high - low) / max(count - 1, 1)
  magnitude = 10.0**math.floor(math.log10(raw))
  step = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw)
  first = math.floor(low / step) * step
  ticks = []
  value = first
  while value <= high + 1e-9 * step:
    ticks.append(round(value, 10))
    value += step
  if ticks[-1] < high:
    ticks.append(round(value, 10))
  return ticks


def _label(value: float) -> str:
  return f'{value:g}'


# Matplotlib's tab10 colours, one per series.
COLOURS = ((31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
           (140, 86, 75), (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207))


def render_line_plot(points: Sequence[Point], x_label: str, y_label: str, title: str = '',
                     size: Tuple[int, int] = (720, 480)) -> Image.Image:
  """One series as an RGB image (see `render_lines_plot`)."""
  return render_lines_plot({'': points}, x_label, y_label, title, size)


def render_lines_plot(series: Mapping[str, Sequence[Point]], x_label: str, y_label: str,
                      title: str = '', size: Tuple[int, int] = (720, 480)) -> Image.Image:
  """Several series {label: points} on shared axes, each a polyline of its own colour.

  A legend (top right) names the series that have a non-empty label.

  Raises:
    ValueError: when there is no point or a coordinate is not finite.
  """
  series = {label: list(points) for label, points in series.items() if points}
  everything = [point for points in series.values() for point in points]
  if not everything:
    raise ValueError('Nothing to plot: no points.')
  for x, y, error in everything:
    if not all(math.isfinite(v) for v in (x, y, error or 0.0)):
      raise ValueError(f'Cannot plot a non-finite point ({x}, {y}, {error}).')
  width, height = size
  left, right, top, bottom = 70, 20, 40, 55
  lows = [y - (e or 0.0) for _, y, e in everything]
  highs = [y + (e or 0.0) for _, y, e in everything]
  x_ticks = nice_ticks(min(0.0, min(p[0] for p in everything)), max(p[0] for p in everything))
  y_ticks = nice_ticks(min(lows), max(highs))
  x0, x1, y0, y1 = x_ticks[0], x_ticks[-1], y_ticks[0], y_ticks[-1]

  def to_pixel(x, y):
    px = left + (x - x0) / (x1 - x0) * (width - left - right)
    py = height - bottom - (y - y0) / (y1 - y0) * (height - top - bottom)
    return px, py

  image = Image.new('RGB', size, 'white')
  draw = ImageDraw.Draw(image)
  font = ImageFont.load_default()
  grid, ink = (225, 225, 225), (0, 0, 0)
  for tick in x_ticks:
    px, _ = to_pixel(tick, y0)
    draw.line([(px, top), (px, height - bottom)], fill=grid)
    draw.text((px, height - bottom + 6), _label(tick), fill=ink, font=font, anchor='ma')
  for tick in y_ticks:
    _, py = to_pixel(x0, tick)
    draw.line([(left, py), (width - right, py)], fill=grid)
    draw.text((left - 6, py), _label(tick), fill=ink, font=font, anchor='rm')
  draw.rectangle([left, top, width - right, height - bottom], outline=ink)
  draw.text(((left + width - right) / 2, height - 18), x_label, fill=ink, font=font, anchor='mm')
  draw.text((8, top - 22), y_label, fill=ink, font=font)
  draw.text(((left + width - right) / 2, 12), title, fill=ink, font=font, anchor='mm')
  legend_y = top + 8
  for index, (label, points) in enumerate(series.items()):
    colour = COLOURS[index % len(COLOURS)]
    pixels = [to_pixel(x, y) for x, y, _ in points]
    if len(pixels) > 1:
      draw.line(pixels, fill=colour, width=2)
    for (x, y, error), (px, py) in zip(points, pixels):
      if error:
        _, low = to_pixel(x, y - error)
        _, high = to_pixel(x, y + error)
        draw.line([(px, low), (px, high)], fill=colour)
        draw.line([(px - 3, low), (px + 3, low)], fill=colour)
        draw.line([(px - 3, high), (px + 3, high)], fill=colour)
      draw.ellipse([px - 3, py - 3, px + 3, py + 3], fill=colour)
    if label:
      draw.line([(width - right - 190, legend_y), (width - right - 170, legend_y)], fill=colour,
                width=3)
      draw.text((width - right - 165, legend_y), label, fill=ink, font=font, anchor='lm')
      legend_y += 14
  return image


def write_line_plot(path: str, points: Sequence[Point], x_label: str, y_label: str,
                    title: str = '') -> str:
  """Renders the plot and writes it as a PNG atomically; returns `path`."""
  image = render_line_plot(points, x_label, y_label, title)
  return image_grids.write_png(path, np.asarray(image))


def write_lines_plot(path: str, series: Mapping[str, Sequence[Point]], x_label: str,
                     y_label: str, title: str = '') -> str:
  """Renders several series and writes the PNG atomically; returns `path`."""
  image = render_lines_plot(series, x_label, y_label, title)
  return image_grids.write_png(path, np.asarray(image))
