"""Progress: the one progress display of vlae_tf, and the pacing of the train loop.

`ProgressLine` is how every long job shows its progress on stderr (`ProgressBar` for a count of
items, e.g. evaluation's images and bin/compress's; bin/reproduce's table line): on a terminal one
line rewritten in place at every update, elsewhere (a log file, a pipe) a line of its own at most
every `PROGRESS_SECONDS` seconds, and always the final one.

The rest paces the train loop's chunks of steps by wall time.

The train step runs inside one `tf.function` for several steps at a time (a chunk), because a call
from Python costs more than a small model's step. Chunks used to run to the next summary,
checkpoint or validation step: 100 steps of a slow configuration are minutes, during which nothing
is printed and a SIGTERM waits. Here a chunk also ends after about `CHUNK_SECONDS` of wall time:

    num_steps = min(next boundary - step, 10 * previous num_steps,
                    max(1, floor(CHUNK_SECONDS / seconds per step of the previous chunk)))

The first chunk of a process is one step (it traces and compiles); the second is one step again
(its time is the first measurement without tracing), and the length grows at most tenfold per
chunk, so a step time measured too low at first costs at most one chunk of ten times the
target. A call costs a few milliseconds, so 2-second chunks leave the step rate unchanged, and a
signal waits for at most one chunk (or one step, when a step takes longer than the target).

Progress lines are due when the next chunk would end more than `PROGRESS_SECONDS` after the
previous line. Their rates count training steps only (the time inside the chunks, tracing
excluded); their ETA is the wall time per step since compilation ended (checkpoints, validation
and summaries included, tracing not) times the steps left.
"""

import math
import sys
import time

CHUNK_SECONDS = 2.0
PROGRESS_SECONDS = 10.0
MAX_GROWTH = 10


def format_duration(seconds):
  """h:mm:ss, or '?' for an unknown (None, inf, NaN) duration."""
  if seconds is None or not math.isfinite(seconds):
    return '?'
  seconds = int(seconds)
  return f'{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}'


class ChunkPacer:
  """Chooses the number of steps of the next chunk so that it takes about `target_seconds`."""

  def __init__(self, target_seconds=None, max_growth=MAX_GROWTH):
    self.target_seconds = CHUNK_SECONDS if target_seconds is None else float(target_seconds)
    self.max_growth = int(max_growth)
    self.seconds_per_step = None  # of the last measured chunk
    self._last = 1

  def next_chunk(self, limit):
    """The length of the next chunk, between 1 and `limit` (the steps to the next boundary)."""
    if self.seconds_per_step is None:
      wanted = 1
    else:
      wanted = int(self.target_seconds / max(self.seconds_per_step, 1e-9))
    num_steps = max(1, min(wanted, self._last * self.max_growth, int(limit)))
    self._last = num_steps
    return num_steps

  def record(self, num_steps, seconds):
    """Measures a chunk of `num_steps` steps that took `seconds` (not the tracing one)."""
    if num_steps > 0:
      self.seconds_per_step = seconds / num_steps

  def expected_seconds(self):
    """About how long the next chunk will take (0 before any measurement)."""
    if self.seconds_per_step is None:
      return 0.0
    longest = self._last * self.max_growth * self.seconds_per_step
    return max(self.seconds_per_step, min(longest, self.target_seconds))


class RunningMeans:
  """Means of metrics over several chunks, each chunk weighted by its applied (finite) steps.

  `Trainer.train_loop` returns the means over a chunk's applied steps and the count of its
  skipped ones; this accumulates them into the means over every applied step since `reset`, and
  the steps and seconds of the timed chunks (those that did not trace) for a step rate.
  """

  def __init__(self, keys):
    self.keys = tuple(keys)
    self.reset()

  def reset(self):
    self._sums = {key: 0.0 for key in self.keys}
    self.good_steps = 0
    self.bad_steps = 0
    self.timed_steps = 0
    self.timed_seconds = 0.0

  def add(self, metrics, num_steps, seconds, timed=True):
    bad = int(metrics['bad_steps'])
    good = num_steps - bad
    if good > 0:
      for key in self.keys:
        self._sums[key] += metrics[key] * good
    self.good_steps += max(good, 0)
    self.bad_steps += bad
    if timed:
      self.timed_steps += num_steps
      self.timed_seconds += seconds

  def means(self):
    """{key: mean over the applied steps} (NaN when no step was applied)."""
    if not self.good_steps:
      return {key: float('nan') for key in self.keys}
    return {key: value / self.good_steps for key, value in self._sums.items()}

  def steps_per_second(self):
    """Steps per second inside the timed chunks, or None before any was timed."""
    if not self.timed_steps or self.timed_seconds <= 0:
      return None
    return self.timed_steps / self.timed_seconds


class EtaClock:
  """Remaining time from the wall time per step since compilation ended."""

  def __init__(self, total_steps):
    self.total_steps = int(total_steps)
    self._origin = None  # (step, unix time)

  def start(self, step, now=None):
    """Compilation is over at `step`: time counts from now."""
    self._origin = (int(step), time.time() if now is None else now)

  def measured(self, step, now=None):
    """(steps, seconds) timed since compilation ended, or None before a step was timed."""
    if self._origin is None or step <= self._origin[0]:
      return None
    now = time.time() if now is None else now
    return int(step) - self._origin[0], now - self._origin[1]

  def remaining_seconds(self, step, now=None):
    """The estimated seconds to `total_steps`, or None before a step was timed."""
    if self._origin is None or step <= self._origin[0]:
      return None
    now = time.time() if now is None else now
    seconds_per_step = (now - self._origin[1]) / (step - self._origin[0])
    return max(self.total_steps - step, 0) * seconds_per_step


BUDGET_NOTICE_SECONDS = 30.0   # Wall time after compilation before the budget line.
FIRST_MODEL_SECONDS = 1800.0   # "A model in about half an hour": what the budget line offers.


def budget_line(step, total_steps, measured_steps, measured_seconds, now=None):
  """The one line that says, early in a run, what its budget costs on this machine; None when
  nothing is left to say (no step timed, or the run ends within a minute).

  From the wall time per step measured since compilation (`measured_seconds` over
  `measured_steps`, checkpoints and summaries included): when the steps left end, and for a run
  longer than about 1.5 x FIRST_MODEL_SECONDS how to get a model sooner: the step count that ends
  about FIRST_MODEL_SECONDS after now (rounded down to a hundred) and --time_limit (pieces).
  """
  if measured_steps <= 0 or measured_seconds <= 0:
    return None
  seconds_per_step = measured_seconds / measured_steps
  remaining = max(int(total_steps) - int(step), 0) * seconds_per_step
  if remaining < 60:
    return None
  now = time.time() if now is None else now
  end = time.strftime('%H:%M %Z', time.localtime(now + remaining))
  line = (f'Measured {seconds_per_step:.3g} s a step over {measured_steps:,} steps: the '
          f'{int(total_steps):,} steps end in about {format_duration(remaining)} (at {end}).')
  if remaining > 1.5 * FIRST_MODEL_SECONDS:
    sooner = int(step + FIRST_MODEL_SECONDS / seconds_per_step) // 100 * 100
    if sooner > step:
      line += (f' A model in about {FIRST_MODEL_SECONDS / 60:.0f} min: '
               f'--gin_param=TRAIN_STEPS={sooner} on the same command (it continues this run); '
               '--time_limit=DURATION runs the whole budget in pieces.')
  return line


class Deadline:
  """Says when a line is due: at least every `interval` seconds, judged before a piece of work."""

  def __init__(self, interval=None, now=None):
    self.interval = PROGRESS_SECONDS if interval is None else float(interval)
    self.last = time.time() if now is None else now

  def due(self, upcoming_seconds=0.0, now=None):
    """True when waiting for `upcoming_seconds` more would pass the deadline."""
    now = time.time() if now is None else now
    return now + upcoming_seconds - self.last >= self.interval

  def reset(self, now=None):
    self.last = time.time() if now is None else now


class ProgressLine:
  """One progress display on a stream (default stderr).

  On a terminal (`in_place`) every update rewrites the line in place (a carriage return, the
  newline only after the final update); elsewhere each update shown is a line of its own, at most
  one every `min_interval` seconds unless it is forced or final.
  """

  def __init__(self, stream=None, min_interval=None, in_place=None):
    self.stream = stream or sys.stderr
    self.min_interval = PROGRESS_SECONDS if min_interval is None else float(min_interval)
    if in_place is None:
      in_place = hasattr(self.stream, 'isatty') and self.stream.isatty()
    self.in_place = bool(in_place)
    self._last_shown = -math.inf  # unix time of the last line written

  def show(self, text, force=False, final=False, now=None):
    """Writes `text` unless the last line is too recent; returns whether it was written."""
    now = time.time() if now is None else now
    if not (self.in_place or force or final) and now - self._last_shown < self.min_interval:
      return False
    self._last_shown = now
    end = '\n' if final or not self.in_place else ''
    self.stream.write(('\r' if self.in_place else '') + text + end)
    self.stream.flush()
    return True


class ProgressBar:
  """A bar, a rate and an ETA for `total` items, on a `ProgressLine`:

      eval test K=4096 [###############...............] 5/10 2.1 images/s ETA 0:00:02

  Call it with the count of items done so far. A bar that continues earlier work (`done`: items
  done before, e.g. by an earlier piece) starts its bar there and times only the items after it.
  """

  def __init__(self, total, description='', stream=None, width=30, min_interval=None,
               unit='images', done=0):
    self.total = max(int(total), 1)
    self.done_before = int(done)
    self.description = description
    self.width = int(width)
    self.unit = unit
    self.line = ProgressLine(stream, min_interval)
    self._began = time.time()
    self._first = None  # (count, unix time) of the first update
    self._timed = False

  def __call__(self, count):
    """Shows the bar. The first update's time includes tracing and compilation, so the rate and
    ETA come from the updates after it (the first line says so instead of a wild ETA); the
    second update is always shown."""
    now = time.time()
    if self._first is None:
      self._first = (count, now)
      before = f'; {self.done_before} done before' if self.done_before else ''
      text = (f'{self.description} [{self._bar(count)}] {count}/{self.total} first batch in '
              f'{now - self._began:.1f} s (compilation included{before})')
      if count < self.total:
        text += ', ETA after the next'
      self.line.show(text, force=True, final=count >= self.total, now=now)
      return
    done = count - self._first[0]
    elapsed = max(now - self._first[1], 1e-9)
    rate = done / elapsed
    remaining = (self.total - count) / rate if rate > 0 else float('inf')
    second = not self._timed
    self._timed = True
    self.line.show(f'{self.description} [{self._bar(count)}] {count}/{self.total} {rate:.1f} '
                   f'{self.unit}/s ETA {format_duration(remaining)}', force=second,
                   final=count >= self.total, now=now)

  def _bar(self, count):
    filled = int(self.width * min(count / self.total, 1.0))
    return '#' * filled + '.' * (self.width - filled)
