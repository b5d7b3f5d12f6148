"""Tests of signals.py: SIGTERM and SIGINT as a flag, only inside the block, only in the main thread.
"""

import os
import signal
import threading
import time
from unittest import mock

import tensorflow as tf

from vlae_tf import files
from vlae_tf import signals


def deliver(signum):
  """Sends `signum` to this process and waits until Python has run the handler."""
  os.kill(os.getpid(), signum)
  time.sleep(0.01)  # The handler runs between bytecodes of the main thread.


class StopRequestsTest(tf.test.TestCase):

  def test_a_signal_sets_the_flag_and_the_handlers_come_back(self):
    previous = {signum: signal.getsignal(signum) for signum in signals.StopRequests.SIGNALS}
    with signals.StopRequests() as stop:
      self.assertFalse(stop.requested)
      deliver(signal.SIGTERM)
      self.assertTrue(stop.requested)
      self.assertEqual(stop.signum, signal.SIGTERM)
    for signum, handler in previous.items():
      self.assertIs(signal.getsignal(signum), handler)

  def test_a_second_signal_stops_now(self):
    with signals.StopRequests() as stop:
      deliver(signal.SIGINT)
      with self.assertRaisesRegex(KeyboardInterrupt, 'second SIGTERM: stopping without saving'):
        deliver(signal.SIGTERM)
    self.assertEqual(stop.signum, signal.SIGINT)  # The first one stays the reason.

  def test_outside_the_main_thread_nothing_is_installed(self):
    before = signal.getsignal(signal.SIGTERM)
    seen = []

    def enter():
      with signals.StopRequests():
        seen.append(signal.getsignal(signal.SIGTERM))

    thread = threading.Thread(target=enter)
    thread.start()
    thread.join()
    self.assertEqual(seen, [before])


class _Exited(Exception):
  pass


class WatcherTest(tf.test.TestCase):
  """What the watcher thread of the binaries (signals.install) does with a signal, called here
  directly (installing it would answer signals to the test process)."""

  def setUp(self):
    super().setUp()
    self.exits = []

    def exit_now(signum, line):
      self.exits.append((signum, line))
      files.WRITING.release()  # The real exit never returns; here the lock is given back.
      signals._state['handling'] = False  # pylint: disable=protected-access
      raise _Exited()

    self.enter_context(mock.patch.object(signals, 'exit_now', exit_now))

  def answer(self, signum):
    try:
      signals._answer(signum)  # pylint: disable=protected-access
    except _Exited:
      pass

  def test_the_innermost_block_answers(self):
    with signals.when_signalled(lambda signum: 'outer'):
      with signals.when_signalled(lambda signum: f'inner {signals.signal_name(signum)}'):
        self.answer(signal.SIGTERM)
      self.answer(signal.SIGINT)
    self.assertEqual(self.exits, [(signal.SIGTERM, 'inner SIGTERM'), (signal.SIGINT, 'outer')])

  def test_the_train_loop_exits_at_once_then_saves_then_exits_on_a_second_signal(self):
    with signals.StopRequests(exit_at_once=True) as stop:
      self.answer(signal.SIGTERM)  # Tracing: nothing to save.
      self.assertIn('before the first steps of this process ended', self.exits[-1][1])
      self.assertFalse(stop.requested)
      stop.exit_at_once = False
      self.answer(signal.SIGTERM)  # The loop saves a checkpoint: the flag, no exit.
      self.assertEqual((stop.signum, len(self.exits)), (signal.SIGTERM, 1))
      self.answer(signal.SIGINT)  # A second signal: at once.
      self.assertIn('second signal (SIGINT): stopped at once', self.exits[-1][1])

  def test_an_exit_waits_for_a_file_being_written(self):
    order = []
    with files.WRITING:
      thread = threading.Thread(target=lambda: (self.answer(signal.SIGTERM),
                                                order.append('exited')))
      with signals.when_signalled(lambda signum: 'stopped'):
        thread.start()
        time.sleep(0.2)
        order.append('written')
    thread.join()
    self.assertEqual(order, ['written', 'exited'])
    self.assertEqual(self.exits, [(signal.SIGTERM, 'stopped')])


if __name__ == '__main__':
  tf.test.main()
