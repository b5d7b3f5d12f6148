"""Tests of the Pillow line plots (the time-to-quality curve)."""

import math

import numpy as np
import pytest

from vlae_tf.evaluation import plots


@pytest.mark.parametrize('low,high', [(83.2, 121.7), (0.0, 61.3), (0.004, 0.0071), (5.0, 5.0)])
def test_nice_ticks_cover_the_range_in_round_steps(low, high):
  ticks = plots.nice_ticks(low, high)
  assert ticks[0] <= low and ticks[-1] >= high
  steps = np.diff(ticks)
  assert np.allclose(steps, steps[0])
  mantissa = steps[0] / 10.0**math.floor(math.log10(steps[0]))
  assert min(abs(mantissa - m) for m in (1, 2, 5, 10)) < 1e-6
  assert 2 <= len(ticks) <= 12


def test_points_and_error_bars_are_drawn_where_they_belong(tmp_path):
  points = [(0.0, 100.0, 2.0), (30.0, 90.0, None), (60.0, 80.0, 1.0)]
  image = plots.render_line_plot(points, 'minutes', 'NLL (nats)', 'title')
  pixels = np.asarray(image)
  blue = np.all(pixels == (31, 119, 180), axis=-1)
  # Axes: x ticks 0..60 over pixels 70..700, y ticks 80..100 (+-2 error) over 425..40.
  ticks_x, ticks_y = plots.nice_ticks(0.0, 60.0), plots.nice_ticks(79.0, 102.0)
  for x, y, _ in points:
    px = 70 + (x - ticks_x[0]) / (ticks_x[-1] - ticks_x[0]) * 630
    py = 425 - (y - ticks_y[0]) / (ticks_y[-1] - ticks_y[0]) * 385
    assert blue[int(round(py)), int(round(px))], (x, y)
  assert blue.sum() < 0.05 * blue.size  # A line, not a filled area.
  path = plots.write_line_plot(str(tmp_path / 'curve.png'), points, 'minutes', 'NLL')
  assert path.endswith('curve.png') and (tmp_path / 'curve.png').stat().st_size > 0


@pytest.mark.parametrize('points,message', [([], 'no points'),
                                            ([(0.0, float('nan'), None)], 'non-finite')])
def test_bad_points_are_refused(points, message):
  with pytest.raises(ValueError, match=message):
    plots.render_line_plot(points, 'x', 'y')


def test_several_series_get_their_own_colours_and_a_legend():
  series = {'first': [(0.0, 90.0, 1.0), (10.0, 85.0, 1.0)],
            'second': [(0.0, 95.0, None), (10.0, 88.0, None)]}
  pixels = np.asarray(plots.render_lines_plot(series, 'step', 'NLL', 'two runs'))
  for colour in plots.COLOURS[:2]:
    assert np.all(pixels == colour, axis=-1).sum() > 50, colour
  assert not np.all(pixels == plots.COLOURS[2], axis=-1).any()
