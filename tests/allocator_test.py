"""Tests of the binaries' allocator choice (vlae_tf/allocator.py)."""

import os
import subprocess
import sys
import tempfile

from absl.testing import absltest

from vlae_tf import errors
from vlae_tf import allocator

TCMALLOC = 'libtcmalloc_minimal.so.4'


def choose(environ, found=TCMALLOC, platform='linux', glibc=True):
  return allocator.library_to_preload(environ, find=lambda: found, platform=platform,
                                      has_glibc=lambda: glibc)


class ChoiceTest(absltest.TestCase):

  def test_auto_preloads_tcmalloc_when_found_else_tunes_glibc(self):
    self.assertEqual(choose({}), TCMALLOC)
    self.assertEqual(choose({'VLAE_TF_ALLOCATOR': 'auto'}), TCMALLOC)
    self.assertEqual(choose({}, found=None), 'glibc')
    self.assertIsNone(choose({}, found=None, glibc=False))  # musl: as it is.
    self.assertIsNone(choose({}, platform='darwin'))
    self.assertIsNone(choose({'MALLOC_TOP_PAD_': '0'}, found=None))  # The user's own settings.

  def test_glibc_asked_for_tunes_glibc_even_with_tcmalloc_installed(self):
    self.assertEqual(choose({'VLAE_TF_ALLOCATOR': 'glibc'}), 'glibc')
    self.assertIsNone(choose({'VLAE_TF_ALLOCATOR': 'glibc', **allocator.GLIBC_TUNED}))
    with self.assertRaisesRegex(errors.AllocatorError, 'does not run on glibc'):
      choose({'VLAE_TF_ALLOCATOR': 'glibc'}, glibc=False)

  def test_the_glibc_settings_are_within_what_glibc_accepts(self):
    # mallopt(3): M_MMAP_THRESHOLD at most HEAP_MAX_SIZE / 2 = 32 MiB on 64-bit systems (a larger
    # value is ignored, and the threshold stays dynamic); the others are any size_t.
    self.assertLessEqual(int(allocator.GLIBC_TUNED['MALLOC_MMAP_THRESHOLD_']), 32 << 20)
    self.assertGreaterEqual(int(allocator.GLIBC_TUNED['MALLOC_MMAP_THRESHOLD_']), 28 << 20)

  def test_system_and_an_allocator_already_there_run_as_they_are(self):
    self.assertIsNone(choose({'VLAE_TF_ALLOCATOR': 'system'}))
    self.assertIsNone(choose({'LD_PRELOAD': '/usr/lib/libtcmalloc.so.4'}))
    self.assertIsNone(choose({'_VLAE_TF_ALLOCATOR_SET': '1'}))  # Never re-executed twice.

  def test_tcmalloc_asked_for_but_missing_is_one_line_naming_the_package(self):
    with self.assertRaisesRegex(errors.AllocatorError,
                                r'^VLAE_TF_ALLOCATOR=tcmalloc but TCMalloc is not installed: '
                                r'.*apt-get install libtcmalloc-minimal4'):
      choose({'VLAE_TF_ALLOCATOR': 'tcmalloc'}, found=None)
    with self.assertRaisesRegex(errors.AllocatorError, 'Linux only'):
      choose({'VLAE_TF_ALLOCATOR': 'tcmalloc'}, platform='darwin')

  def test_a_path_is_preloaded_if_it_is_a_file(self):
    library = os.path.join(tempfile.mkdtemp(), 'libmine.so')
    open(library, 'wb').close()
    self.assertEqual(choose({'VLAE_TF_ALLOCATOR': library}), library)
    self.assertIsNone(choose({'VLAE_TF_ALLOCATOR': library, 'LD_PRELOAD': library}))
    with self.assertRaisesRegex(errors.AllocatorError, 'no such file'):
      choose({'VLAE_TF_ALLOCATOR': library + '.missing'})

  def test_in_use_names_the_preloaded_allocator(self):
    self.assertEqual(allocator.in_use({}), 'system')
    self.assertEqual(allocator.in_use({'LD_PRELOAD': 'libfoo.so:' + TCMALLOC}), 'tcmalloc')
    self.assertEqual(allocator.in_use({'LD_PRELOAD': '/x/libmine.so',
                                       'VLAE_TF_ALLOCATOR': '/x/libmine.so'}), 'libmine.so')
    self.assertEqual(allocator.in_use({'LD_PRELOAD': '/x/libother.so'}), 'system')
    self.assertEqual(allocator.in_use(dict(allocator.GLIBC_TUNED)), 'glibc')
    self.assertEqual(allocator.in_use({'MALLOC_TOP_PAD_': '0'}), 'system')


class ReexecutionTest(absltest.TestCase):

  def test_the_same_command_line_again_with_the_library_first_in_ld_preload(self):
    calls = []
    environ = {'LD_PRELOAD': 'libfirst.so', 'HOME': '/home/x'}
    allocator.use_chosen_allocator(environ, execve=lambda *args: calls.append(args),
                                   find=lambda: TCMALLOC)
    (program, arguments, child), = calls
    self.assertEqual(program, sys.executable)
    self.assertEqual(arguments[1:], allocator._command_line()[1:])  # pylint: disable=protected-access
    self.assertEqual(child['LD_PRELOAD'], f'{TCMALLOC}:libfirst.so')
    self.assertEqual(child['HOME'], '/home/x')
    self.assertEqual(child['_VLAE_TF_ALLOCATOR_SET'], '1')
    self.assertEqual(environ, {'LD_PRELOAD': 'libfirst.so', 'HOME': '/home/x'})

  def test_a_real_process_re_executes_itself_once_and_keeps_its_arguments(self):
    # `python -c CODE ARG`: the code and its argument survive the re-execution (read from
    # /proc/self/cmdline; sys.argv has lost the code). The outcome follows this machine: with
    # TCMalloc installed the process ends up with it mapped, without it with glibc's tuned settings.
    code = ('import os, sys; from vlae_tf import allocator; allocator.use_chosen_allocator(); '
            "maps = open('/proc/self/maps').read(); "
            "print(allocator.in_use(), 'tcmalloc' in maps, os.environ.get('MALLOC_TOP_PAD_'), "
            'sys.argv[1:])')
    environ = {key: value for key, value in os.environ.items()
               if key not in ('LD_PRELOAD', 'VLAE_TF_ALLOCATOR', '_VLAE_TF_ALLOCATOR_SET',
                              *allocator.GLIBC_TUNED)}

    def run(**more):
      return subprocess.run([sys.executable, '-c', code, 'an argument'], env={**environ, **more},
                            capture_output=True, text=True, check=True).stdout

    pad = allocator.GLIBC_TUNED['MALLOC_TOP_PAD_']
    if allocator.find_tcmalloc():
      self.assertEqual(run(), "tcmalloc True None ['an argument']\n")
    else:
      self.assertEqual(run(), f"glibc False {pad} ['an argument']\n")
    self.assertEqual(run(VLAE_TF_ALLOCATOR='glibc'), f"glibc False {pad} ['an argument']\n")
    self.assertEqual(run(VLAE_TF_ALLOCATOR='system'), "system False None ['an argument']\n")


if __name__ == '__main__':
  absltest.main()
