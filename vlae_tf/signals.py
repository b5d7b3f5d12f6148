"""SIGTERM and SIGINT at any moment: a flag the train loop checks, or a clean exit at once.

Python runs a signal handler only between bytecodes of the main thread, never inside a running
TensorFlow call (an evaluation batch of K = 4096 importance samples took 30 s on a busy 2-core
CPU; a graph optimization at start-up, minutes): a handler alone cannot answer within seconds.
So the binaries (`install`) also have the C-level handler wake a watcher thread
(`signal.set_wakeup_fd`), which answers at once, whatever the main thread is doing, by what the
innermost `when_signalled` block (or the binary's default) says:

    start-up, data, init, tracing     nothing to save yet: one `stopped:` line, exit 128 + signal
    evaluation (evaluator.py)         the batches done so far written as a partial result, then
                                      one line and exit
    export, compress, decompress      their temporary files removed (outputs are renamed into
                                      place only when complete: nothing half-written), one line
    the train loop (`StopRequests`)   a flag: the loop finishes the running chunk (about 2 s),
                                      saves a checkpoint and raises errors.TrainingInterrupted

An exit of the watcher is `os._exit`: like SIGKILL for the files (every file of vlae_tf is
written to a temporary name and renamed, checkpoints are renamed into place by TensorFlow), with
the one line and the exit status of the signal. Without `install` (tests, notebooks) a
`when_signalled` block does nothing and `StopRequests` works as before, from the main thread.
"""

import os
import signal
import socket
import sys
import threading

from absl import logging

from vlae_tf import files

SIGNALS = (signal.SIGTERM, signal.SIGINT)

_lock = threading.RLock()
_actions = []  # The innermost last: (what to do on a signal, from the watcher thread) or None.
_state = {'installed': False, 'default': None, 'handling': False}


def signal_name(signum):
  return signal.Signals(signum).name


def exit_now(signum, line):
  """Prints `stopped: <line>` on stderr and ends the process with 128 + `signum`, at once."""
  try:
    sys.stdout.flush()
    logging.flush()
    # On a terminal, a progress bar may be rewriting its line: the stopped line gets its own.
    start = '\n' if sys.stderr.isatty() else ''
    print(f'{start}stopped: {line}', file=sys.stderr, flush=True)
  finally:
    os._exit(128 + int(signum))  # pylint: disable=protected-access


def _answer(signum):
  """What the watcher thread does with a signal: the innermost action, or nothing for a flag."""
  with _lock:
    if _state['handling']:
      return
    action = _actions[-1] if _actions else _state['default']
    if action is None:  # StopRequests: the main thread's handler sets the flag.
      return
    _state['handling'] = True
  # A file being written and renamed into place (files.WRITING) is finished first; the exit
  # happens with the lock held, so that no other write begins.
  files.WRITING.acquire()
  try:
    line = action(signum)
  except Exception as error:  # pylint: disable=broad-except
    line = f'interrupted by {signal_name(signum)} ({type(error).__name__} while stopping: {error})'
  if isinstance(line, _KeepRunning):  # StopRequests after its first chunk: the flag answers.
    files.WRITING.release()
    with _lock:
      _state['handling'] = False
    return
  exit_now(signum, line or f'interrupted by {signal_name(signum)}')


def _watch(reader):
  while True:
    data = reader.recv(64)
    if not data:
      return
    for signum in data:
      if signum in SIGNALS:
        _answer(signum)


def _main_thread_handler(signum, frame):
  """Installed by `install`: the watcher answers; a flag block (StopRequests) has its own."""
  del signum, frame


def install(default_line):
  """Answers SIGTERM and SIGINT from a watcher thread from now on (the binaries call this).

  Args:
    default_line: `default_line(signame)`, the `stopped:` line outside every `when_signalled`
      block (start-up: nothing to save yet).
  """
  if _state['installed'] or threading.current_thread() is not threading.main_thread():
    return
  _state['default'] = lambda signum: default_line(signal_name(signum))
  reader, writer = socket.socketpair()
  writer.setblocking(False)
  signal.set_wakeup_fd(writer.fileno(), warn_on_full_buffer=False)
  _state['sockets'] = (reader, writer)
  for signum in SIGNALS:
    # A signal ignored by the parent (a background job of a script ignores SIGINT) stays so.
    if signal.getsignal(signum) is not signal.SIG_IGN:
      signal.signal(signum, _main_thread_handler)
  threading.Thread(target=_watch, args=(reader,), name='vlae-signals', daemon=True).start()
  _state['installed'] = True


def installed():
  return _state['installed']


class when_signalled:  # pylint: disable=invalid-name
  """Inside the block, a signal runs `action(signum)` in the watcher thread, prints the line it
  returns (`stopped: <line>`) and exits with 128 + signal. `action` must be quick and must not
  need the main thread (which may be inside a long TensorFlow call). None: the flag of
  `StopRequests`, answered by the main thread."""

  def __init__(self, action):
    self._action = action

  def __enter__(self):
    with _lock:
      _actions.append(self._action)
    return self

  def __exit__(self, *exc_info):
    with _lock:
      _actions.remove(self._action)


class StopRequests:
  """Turns SIGTERM and SIGINT into a flag (`signum`) while the `with` block runs.

  Installed only in the main thread (Python delivers signals there), and only inside the block;
  the previous handlers come back on exit. A second signal stops at once (below).

      with StopRequests() as stop:
        while not stop.requested:
          ...

  With the watcher thread of the binaries (`install`), the watcher answers: while `exit_at_once`
  is true (the train loop sets it until its first chunk and the compilations after it are done:
  nothing new to save; tracing can take minutes) a signal ends the process at once; later it sets
  the flag, and a second signal ends the process at once without saving. Without the watcher
  (tests, notebooks), the main thread's handler sets the flag, and a second signal raises
  KeyboardInterrupt.

  Attributes:
    signum: the first signal received, or None.
    exit_at_once: whether a signal ends the process at once (see above).
  """

  SIGNALS = SIGNALS

  def __init__(self, exit_at_once=False):
    self.signum = None
    self.exit_at_once = exit_at_once
    self._previous = {}
    self._block = when_signalled(self._answer_at_once)

  @property
  def requested(self):
    """Whether a signal asked the run to stop."""
    return self.signum is not None

  def _answer_at_once(self, signum):
    """In the watcher thread (binaries): exit now while nothing new is to be saved; else set the
    flag (the loop saves a checkpoint), and a second signal exits at once without saving."""
    if self.exit_at_once:
      return (f'interrupted by {signal_name(signum)} before the first steps of this process ended '
              '(start-up, compilation): nothing new to save; run the same command again to '
              'resume')
    if self.signum is None:
      self._request(signum)
      return _KEEP_RUNNING
    return (f'second signal ({signal_name(signum)}): stopped at once, without saving the steps '
            'since the last checkpoint; run the same command again to resume from it')

  def _request(self, signum):
    self.signum = signum
    logging.warning('Received %s: saving a checkpoint after the running steps, then stopping.',
                    signal_name(signum))

  def _handle(self, signum, frame):
    """In the main thread, without the watcher (tests, notebooks): the flag, then
    KeyboardInterrupt on a second signal."""
    del frame
    if installed():
      return  # The watcher thread answers (`_answer_at_once`).
    if self.signum is not None:
      raise KeyboardInterrupt(f'second {signal_name(signum)}: stopping without saving')
    self._request(signum)

  def __enter__(self):
    if threading.current_thread() is threading.main_thread():
      for signum in self.SIGNALS:
        self._previous[signum] = signal.signal(signum, self._handle)
      self._block.__enter__()
    return self

  def __exit__(self, *exc_info):
    for signum, previous in self._previous.items():
      signal.signal(signum, previous)
    if self._previous:
      self._block.__exit__(*exc_info)
    self._previous = {}


class _KeepRunning(str):
  """Returned by an action: not an exit (the flag of StopRequests answers)."""


_KEEP_RUNNING = _KeepRunning('')
