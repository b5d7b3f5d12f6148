"""Tests of signals.py: SIGTERM and SIGINT as a flag, only inside the block, only in the main thread.
"""

import os
import signal
import threading
import time

import tensorflow as tf

from vlae_tf.training import signals


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


if __name__ == '__main__':
  tf.test.main()
