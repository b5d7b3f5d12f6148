"""Tests of progress.py: chunk lengths bounded by wall time, running means, ETA, deadlines."""

import io
import math

import numpy as np
import pytest

from vlae_tf import progress


def test_chunks_grow_tenfold_at_most_towards_the_target_and_stop_at_boundaries():
  pacer = progress.ChunkPacer(target_seconds=2.0)
  assert pacer.next_chunk(1000) == 1  # Nothing measured yet.
  pacer.record(1, 0.01)  # 10 ms per step: 200 steps would take 2 s...
  assert pacer.next_chunk(1000) == 10  # ...but growth is at most tenfold per chunk.
  pacer.record(10, 0.1)
  assert pacer.next_chunk(1000) == 100
  pacer.record(100, 1.0)
  assert pacer.next_chunk(1000) == 200
  pacer.record(200, 2.0)
  assert pacer.next_chunk(150) == 150  # The next summary / checkpoint / validation step.
  pacer.record(150, 6.0)  # The machine slowed down (40 ms per step): shorter chunks at once.
  assert pacer.next_chunk(1000) == 50
  pacer.record(50, 150.0)  # A step longer than the target: one step per chunk.
  assert pacer.next_chunk(1000) == 1


def test_expected_seconds_of_the_next_chunk():
  pacer = progress.ChunkPacer(target_seconds=2.0)
  assert pacer.expected_seconds() == 0.0
  pacer.next_chunk(1000)
  pacer.record(1, 0.01)
  assert pacer.expected_seconds() == pytest.approx(0.1)  # 10 steps of 10 ms.
  pacer.next_chunk(1000)
  pacer.record(10, 0.1)
  assert pacer.expected_seconds() == pytest.approx(1.0)  # 100 steps (tenfold growth).
  pacer.next_chunk(1000)
  pacer.record(100, 1.0)
  assert pacer.expected_seconds() == pytest.approx(2.0)  # The target.
  pacer.record(1, 30.0)
  assert pacer.expected_seconds() == pytest.approx(30.0)  # At least one step.


def test_running_means_weight_chunks_by_their_applied_steps():
  means = progress.RunningMeans(('loss',))
  means.add({'loss': 10.0, 'bad_steps': 0.0}, num_steps=1, seconds=40.0, timed=False)
  means.add({'loss': 4.0, 'bad_steps': 1.0}, num_steps=4, seconds=2.0)  # 3 applied steps.
  means.add({'loss': float('nan'), 'bad_steps': 2.0}, num_steps=2, seconds=1.0)  # None applied.
  assert means.means()['loss'] == pytest.approx((10.0 + 3 * 4.0) / 4)
  assert (means.good_steps, means.bad_steps) == (4, 3)
  assert means.steps_per_second() == pytest.approx(6 / 3.0)  # The tracing chunk left out.
  means.reset()
  assert math.isnan(means.means()['loss'])
  assert means.steps_per_second() is None


def test_one_chunk_mean_is_returned_exactly():
  """With summary_every = 1, the logged loss is the step's loss bit for bit (resume tests).

  Metrics come from float32 tensors: m * n / n is exact in float64 for n < 2**29.
  """
  for value in map(float, np.float32([627.8313, 0.3, 1e-30, 3.4e38, -2.5e-7])):
    for steps in (1, 3, 7, 1000):
      means = progress.RunningMeans(('loss',))
      means.add({'loss': value, 'bad_steps': 0.0}, num_steps=steps, seconds=1.0)
      assert means.means()['loss'] == value


def test_eta_counts_from_the_end_of_compilation():
  eta = progress.EtaClock(total_steps=1000)
  assert eta.remaining_seconds(1, now=100.0) is None
  eta.start(1, now=140.0)  # Step 1 took 40 s with tracing: not counted.
  assert eta.remaining_seconds(1, now=141.0) is None
  assert eta.remaining_seconds(101, now=150.0) == pytest.approx(899 * 0.1)
  assert eta.remaining_seconds(1000, now=200.0) == 0.0


def test_eta_clock_measures_steps_and_seconds_since_compilation():
  eta = progress.EtaClock(total_steps=1000)
  assert eta.measured(5, now=10.0) is None
  eta.start(1, now=140.0)
  assert eta.measured(1, now=150.0) is None
  assert eta.measured(101, now=170.0) == (100, 30.0)


def test_budget_line_says_when_the_budget_ends():
  # 0.5 s a step, 400 steps left: 200 s.
  line = progress.budget_line(step=100, total_steps=500, measured_steps=60,
                              measured_seconds=30.0, now=0.0)
  assert line.startswith('Measured 0.5 s a step over 60 steps: the 500 steps end in about '
                         '0:03:20 (at ')
  assert 'TRAIN_STEPS' not in line  # Short enough: nothing to offer.


def test_budget_line_offers_a_model_in_half_an_hour_for_a_long_budget():
  # 2 s a step, 9,900 steps left: 5.5 h. Half an hour from step 100 is 900 more steps.
  line = progress.budget_line(step=100, total_steps=10_000, measured_steps=15,
                              measured_seconds=30.0, now=0.0)
  assert 'the 10,000 steps end in about 5:30:00' in line
  assert '--gin_param=TRAIN_STEPS=1000 on the same command' in line
  assert '--time_limit=DURATION' in line


@pytest.mark.parametrize('step,total,steps,seconds', [(100, 150, 50, 30.0),   # 30 s left
                                                      (10, 1000, 0, 30.0),    # nothing timed
                                                      (10, 1000, 10, 0.0)])
def test_budget_line_stays_quiet_when_there_is_nothing_to_say(step, total, steps, seconds):
  assert progress.budget_line(step, total, steps, seconds, now=0.0) is None


def test_deadline_is_due_before_the_next_piece_of_work_would_pass_it():
  deadline = progress.Deadline(interval=10.0, now=0.0)
  assert not deadline.due(now=5.0)
  assert not deadline.due(upcoming_seconds=2.0, now=7.0)
  assert deadline.due(upcoming_seconds=2.0, now=8.5)
  deadline.reset(now=8.5)
  assert not deadline.due(now=18.0)
  assert deadline.due(now=18.5)


@pytest.mark.parametrize('seconds,text', [(0, '0:00:00'), (59.9, '0:00:59'), (3661, '1:01:01'),
                                          (None, '?'), (float('inf'), '?'),
                                          (float('nan'), '?')])
def test_format_duration(seconds, text):
  assert progress.format_duration(seconds) == text


class _Terminal(io.StringIO):

  def isatty(self):
    return True


def test_progress_line_in_a_log_is_throttled_unless_forced_or_final():
  stream = io.StringIO()
  line = progress.ProgressLine(stream, min_interval=10.0)
  assert not line.in_place
  assert line.show('first', now=100.0)  # The first line is always shown.
  assert not line.show('too soon', now=105.0)
  assert line.show('forced', force=True, now=106.0)
  assert line.show('final', final=True, now=107.0)
  assert not line.show('too soon again', now=116.0)
  assert line.show('due', now=117.0)
  assert stream.getvalue() == 'first\nforced\nfinal\ndue\n'


def test_progress_line_on_a_terminal_rewrites_one_line_at_every_update():
  stream = _Terminal()
  line = progress.ProgressLine(stream, min_interval=10.0)
  assert line.in_place
  line.show('1/3', now=0.0)
  line.show('2/3', now=0.1)
  line.show('3/3', final=True, now=0.2)
  assert stream.getvalue() == '\r1/3\r2/3\r3/3\n'


def test_progress_bar_lines():
  stream = io.StringIO()
  bar = progress.ProgressBar(10, 'eval', stream=stream, min_interval=0.0)
  bar(5)
  bar(10)
  lines = stream.getvalue().splitlines()
  assert lines[0].startswith('eval [###############...............] 5/10 first batch in ')
  assert 'ETA after the next' in lines[0]  # Compilation is in the first batch: no wild ETA.
  assert lines[1].startswith('eval [##############################] 10/10')
  assert ' images/s ETA ' in lines[1] and lines[1].endswith('ETA 0:00:00')


def test_progress_bar_eta_leaves_the_first_batch_out(monkeypatch):
  clock = iter([0.0, 100.0, 101.0])  # construction, a first batch of 100 s (tracing), then 1 s
  monkeypatch.setattr(progress.time, 'time', lambda: next(clock))
  stream = io.StringIO()
  bar = progress.ProgressBar(100, 'compress', stream=stream, min_interval=3600.0)
  bar(10)
  bar(20)
  lines = stream.getvalue().splitlines()
  assert len(lines) == 2  # The second update is always shown: the first real ETA.
  assert lines[1].endswith('10.0 images/s ETA 0:00:08')


def test_progress_bar_that_continues_earlier_work_times_only_its_own_batches(monkeypatch):
  clock = iter([0.0, 60.0, 70.0])  # construction, a first batch of 60 s (tracing), then 10 s
  monkeypatch.setattr(progress.time, 'time', lambda: next(clock))
  stream = io.StringIO()
  bar = progress.ProgressBar(1000, 'eval', stream=stream, min_interval=3600.0, done=400)
  bar(450)
  bar(500)
  lines = stream.getvalue().splitlines()
  assert lines[0].startswith('eval [#############.................] 450/1000 first batch in 60.0 s')
  assert '400 done before' in lines[0] and 'ETA after the next' in lines[0]
  assert lines[1].endswith('5.0 images/s ETA 0:01:40')


def test_progress_bar_in_a_log_shows_the_final_line_even_when_too_soon():
  stream = io.StringIO()
  bar = progress.ProgressBar(4, 'compress', stream=stream, min_interval=3600.0, unit='images')
  for count in (1, 2, 3, 4):
    bar(count)
  lines = stream.getvalue().splitlines()
  assert [line.split()[2] for line in lines] == ['1/4', '2/4', '4/4']
