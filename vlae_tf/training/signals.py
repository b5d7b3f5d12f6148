"""Signal handling of the train loop: SIGTERM and SIGINT become a flag checked between chunks.

Python runs a handler only between bytecodes of the main thread, never inside a running
`tf.function`: the loop keeps each call of the inner loop to about `progress.CHUNK_SECONDS` for
that reason, and validation passes check the flag between batches. What the loop does once the flag
is set (save a checkpoint, raise `errors.TrainingInterrupted`) is the loop's.
"""

import signal
import threading

from absl import logging


class StopRequests:
  """Turns SIGTERM and SIGINT into a flag (`signum`) while the `with` block runs.

  Installed only in the main thread (Python delivers signals there), and only inside the block;
  the previous handlers come back on exit. A second signal while the first is being handled raises
  KeyboardInterrupt (stop now).

      with StopRequests() as stop:
        while not stop.requested:
          ...

  Attributes:
    signum: the first signal received, or None.
  """

  SIGNALS = (signal.SIGTERM, signal.SIGINT)

  def __init__(self):
    self.signum = None
    self._previous = {}

  @property
  def requested(self):
    """Whether a signal asked the run to stop."""
    return self.signum is not None

  def _handle(self, signum, frame):
    del frame
    if self.signum is not None:
      raise KeyboardInterrupt(f'second {signal.Signals(signum).name}: stopping without saving')
    self.signum = signum
    logging.warning('Received %s: saving a checkpoint after the running steps, then stopping.',
                    signal.Signals(signum).name)

  def __enter__(self):
    if threading.current_thread() is threading.main_thread():
      for signum in self.SIGNALS:
        self._previous[signum] = signal.signal(signum, self._handle)
    return self

  def __exit__(self, *exc_info):
    for signum, previous in self._previous.items():
      signal.signal(signum, previous)
    self._previous = {}
