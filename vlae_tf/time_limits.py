"""Wall-time limits: long work that stops cleanly before a limit and continues when run again.

    bin/train ... --time_limit=2h30m     (also 90m, 45s, 1.5h, or SLURM's 02:30:00)

Cluster jobs (SLURM's --time), preemptible machines and notebook runtimes end a process at a wall
time. A `TimeLimit` counts from the start of the process (`process_start`) and says, before each
unit of work (a chunk of training steps, a batch of evaluated images), whether the unit and the
writing after it fit in what is left (`allows`). When they do not, the loop writes its state (a
checkpoint, the evaluation's progress file) and raises `errors.TimeLimitReached`: the binaries
print one `stopped:` line saying how far the work got and exit with status `EXIT_STATUS` (75,
EX_TEMPFAIL of sysexits.h: "try again"), distinct from success (0), failure (1) and a signal
(128 + N). The same command continues the work:

    until bin/train --model_dir=DIR ... --time_limit=2h; do
      [ $? -eq 75 ] || exit 1     # a real failure ends the loop; a time limit runs again
    done

The estimate of a unit is the longest of the last units seen (an `EstimatedWork`), so the first
unit of a process, which traces and compiles, always runs. Imports nothing heavy: the binaries
parse the flag before TensorFlow loads.
"""

import os
import platform
import re
import time

from vlae_tf import errors

EXIT_STATUS = 75  # EX_TEMPFAIL: stopped at the time limit; the same command continues.

_started = time.monotonic()
_PARTS = re.compile(r'(\d+(?:\.\d*)?|\.\d+)(h|m|s)')
# SLURM's --time forms with a colon or a day: M:S, H:M:S, D-H, D-H:M, D-H:M:S.
_CLOCK = re.compile(r'(\d+):(\d{1,2})(?::(\d{1,2}))?')
_DAYS = re.compile(r'(\d+)-(\d+)(?::(\d{1,2}))?(?::(\d{1,2}))?')


def process_start():
  """The monotonic time at which this process imported vlae_tf (its start, to a second)."""
  return _started


def parse_duration(text):
  """Seconds of a duration: '2h30m', '90m', '45s', '1.5h', or SLURM's forms with a colon or a day
  (M:S, H:M:S, D-H, D-H:M, D-H:M:S). A bare number is refused: SLURM reads it as minutes, most
  people as seconds.

  Raises:
    errors.CliError: an empty, unparsable, unitless, zero or negative duration (one line, with
      examples).
  """
  value = str(text).strip().lower()
  seconds = None
  clock, days = _CLOCK.fullmatch(value), _DAYS.fullmatch(value)
  if clock:
    first, second, third = clock.groups()
    hours, minutes, secs = (first, second, third) if third is not None else (0, first, second)
    seconds = int(hours) * 3600 + int(minutes) * 60 + int(secs)
  elif days:
    day, hours, minutes, secs = days.groups()
    seconds = int(day) * 86400 + int(hours) * 3600 + int(minutes or 0) * 60 + int(secs or 0)
  elif re.fullmatch(r'\d+(\.\d*)?', value):
    raise errors.CliError(f'--time_limit={text}: give a unit, e.g. {value}s or {value}m.')
  elif value and _PARTS.sub('', value) == '':
    units = [unit for _, unit in _PARTS.findall(value)]
    if len(set(units)) == len(units) and units == sorted(units, key='hms'.index):
      seconds = sum(float(number) * {'h': 3600, 'm': 60, 's': 1}[unit]
                    for number, unit in _PARTS.findall(value))
  if seconds is None:
    raise errors.CliError(f'--time_limit={text}: not a duration; give e.g. 2h30m, 90m, 45s or '
                          'SLURM\'s 02:30:00.')
  if seconds <= 0:
    raise errors.CliError(f'--time_limit={text}: the limit must be more than 0 seconds.')
  return float(seconds)


def format_duration(seconds):
  """'2h30m', '45s', '1h0m5s': the flag's own spelling."""
  seconds = int(round(seconds))
  hours, rest = divmod(seconds, 3600)
  minutes, secs = divmod(rest, 60)
  text = (f'{hours}h' if hours else '') + (f'{minutes}m' if minutes or hours and secs else '')
  return text + (f'{secs}s' if secs or not text else '')


class TimeLimit:
  """A wall-time limit of `seconds` from `start` (default: the start of the process)."""

  def __init__(self, seconds, start=None, clock=time.monotonic):
    self.seconds = float(seconds)
    self._clock = clock
    self.start = process_start() if start is None else float(start)

  @classmethod
  def from_flag(cls, text):
    """A limit from --time_limit's text; None for an unset flag."""
    return None if text is None else cls(parse_duration(text))

  def elapsed(self):
    return self._clock() - self.start

  def remaining(self):
    return self.seconds - self.elapsed()

  def allows(self, seconds):
    """Whether `seconds` more of work end before the limit."""
    return self.remaining() >= seconds

  def __str__(self):
    return format_duration(self.seconds)


class EstimatedWork:
  """How long the next unit of work and the writing after it take: the longest unit of the last
  `window` times `margin`, plus the longest write seen (`first_write` before one was timed) and
  `reserve` seconds."""

  def __init__(self, reserve=5.0, margin=1.25, window=5, first_write=10.0):
    self.reserve = float(reserve)
    self.margin = float(margin)
    self._window = int(window)
    self._units = []
    self._first_write = float(first_write)
    self._write = None

  def record_unit(self, seconds):
    self._units = (self._units + [float(seconds)])[-self._window:]

  def record_write(self, seconds):
    self._write = max(self._write or 0.0, float(seconds))

  def seconds(self):
    """The estimate of the next unit with its write, or None before a unit was timed."""
    if not self._units:
      return None
    write = self._first_write if self._write is None else self._write
    return max(self._units) * self.margin + write + self.reserve


def cpu_name():
  """'Intel(R) Xeon(R) Processor, 2 cores': the machine a piece of long work ran on."""
  name = None
  try:
    with open('/proc/cpuinfo') as f:
      for line in f:
        if line.startswith('model name'):
          name = line.split(':', 1)[1].strip()
          break
  except OSError:
    pass
  return f'{name or platform.processor() or platform.machine()}, {os.cpu_count()} cores'


def stop_before(time_limit, estimate):
  """Whether work with `estimate` (an `EstimatedWork`) must stop now, before its next unit."""
  if time_limit is None:
    return False
  needed = estimate.seconds()
  return needed is not None and not time_limit.allows(needed)


def limit_reached(time_limit, what_done, how_to_continue='run the same command again to continue'):
  """The `errors.TimeLimitReached` of work stopped at `time_limit`."""
  return errors.TimeLimitReached(
      f'time limit {time_limit} reached after {format_duration(time_limit.elapsed())}: '
      f'{what_done}; {how_to_continue}')
