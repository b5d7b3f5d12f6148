"""The binaries' memory allocator: TCMalloc when the machine has it, else glibc's malloc tuned.

Why: glibc's malloc serves each tensor above its mmap threshold (a few MB; the activations of a
batch of 128 MNIST images are 0.25-28 MB) with a fresh mmap() and gives it back with munmap(), so
every training step faults its activations in again, page by page. On a 2-core AMD EPYC, training
gin/mnist_vlae_authors.gin took about 200,000 page faults a second, 42% of its CPU time in the
kernel, and ran at 47 images/s; with TCMalloc preloaded, 117 images/s (docs/RESULTS.md, "The memory
allocator").
Intel's TensorFlow CPU guide recommends TCMalloc for the same reason.

Without TCMalloc, glibc's malloc does as well once it keeps its memory (GLIBC_TUNED): an mmap
threshold at glibc's largest (32 MiB, above every activation of the MNIST and Caltech models), so
that tensors come from the heap and are reused, and trim threshold and top pad so large that freed
memory is never given back between steps. Measured on an idle 2-core AMD EPYC (gin/mnist_vlae.gin,
batch 128): glibc as started 142-153 images/s, tuned 178, TCMalloc 180.

An allocator can only be chosen before the process starts (glibc reads its MALLOC_*_ variables at
its first allocation), so `use_chosen_allocator` re-executes the binary once, with the same
interpreter and command line and TCMalloc in LD_PRELOAD or glibc's variables set; its children
(bin/reproduce's trainings) inherit them. VLAE_TF_ALLOCATOR chooses:

    auto      (default) TCMalloc if its library is found, else glibc's malloc tuned
    tcmalloc  TCMalloc, or a one-line error naming the package to install
    glibc     glibc's malloc tuned (GLIBC_TUNED), even where TCMalloc is installed
    system    whatever the process was started with (no re-execution)
    <path>    that shared library

Debian/Ubuntu: apt-get install libtcmalloc-minimal4; Fedora: dnf install gperftools-libs.
"""

import ctypes.util
import os
import platform as platform_lib
import sys

from vlae_tf import errors

ENVIRONMENT_VARIABLE = 'VLAE_TF_ALLOCATOR'
_REEXECUTED = '_VLAE_TF_ALLOCATOR_SET'  # Set in the re-executed process: never twice.
_LIBRARIES = ('tcmalloc_minimal', 'tcmalloc')
# glibc's malloc settings (mallopt(3), read from the environment at start): the largest mmap
# threshold glibc accepts on 64-bit (HEAP_MAX_SIZE / 2; a larger value is ignored), and a trim
# threshold and top pad of gigabytes, so that the heap keeps what a step frees for the next.
GLIBC_TUNED = {'MALLOC_MMAP_THRESHOLD_': str(32 << 20), 'MALLOC_TRIM_THRESHOLD_': str(4 << 30),
               'MALLOC_TOP_PAD_': str(1 << 30)}
GLIBC = 'glibc'  # VLAE_TF_ALLOCATOR's name for glibc's malloc with GLIBC_TUNED, and `in_use`'s.
INSTALL_HINT = ('install TCMalloc (Debian/Ubuntu: apt-get install libtcmalloc-minimal4; '
                'Fedora: dnf install gperftools-libs)')


def find_tcmalloc():
  """The file name of TCMalloc's shared library (for LD_PRELOAD), or None."""
  for name in _LIBRARIES:
    found = ctypes.util.find_library(name)
    if found:
      return found
  return None


def _preloads(environ):
  return [path for path in environ.get('LD_PRELOAD', '').replace(':', ' ').split() if path]


def in_use(environ=None):
  """The allocator of this process: 'tcmalloc', another preloaded library's name, 'glibc' (glibc's
  malloc with GLIBC_TUNED) or 'system' (glibc's malloc as it comes, or the platform's)."""
  environ = os.environ if environ is None else environ
  preloads = _preloads(environ)
  if any('tcmalloc' in os.path.basename(path) for path in preloads):
    return 'tcmalloc'
  chosen = environ.get(ENVIRONMENT_VARIABLE, '')
  if chosen in preloads:
    return os.path.basename(chosen)
  if all(environ.get(name) == value for name, value in GLIBC_TUNED.items()):
    return GLIBC
  return 'system'


def _has_glibc():
  return platform_lib.libc_ver()[0] == 'glibc'


def library_to_preload(environ=None, find=find_tcmalloc, platform=sys.platform,
                       has_glibc=_has_glibc):
  """The library the binary should be re-executed with, GLIBC for glibc's malloc tuned, or None
  to run as it is.

  Raises:
    AllocatorError: VLAE_TF_ALLOCATOR asks for TCMalloc or a file that is not there.
  """
  environ = os.environ if environ is None else environ
  chosen = environ.get(ENVIRONMENT_VARIABLE, 'auto').strip() or 'auto'
  if chosen == 'system' or environ.get(_REEXECUTED) or in_use(environ) != 'system':
    return None
  if chosen == GLIBC or (chosen == 'auto' and platform.startswith('linux') and find() is None):
    if chosen == 'auto' and any(name in environ for name in GLIBC_TUNED):
      return None  # The user's own malloc settings.
    if not has_glibc():
      if chosen == GLIBC:
        raise errors.AllocatorError(f'{ENVIRONMENT_VARIABLE}={GLIBC} but this Python does not '
                                    f'run on glibc; unset it or set {ENVIRONMENT_VARIABLE}=system.')
      return None
    return GLIBC
  if chosen not in ('auto', 'tcmalloc'):
    if not os.path.isfile(chosen):
      raise errors.AllocatorError(
          f'{ENVIRONMENT_VARIABLE}={chosen}: no such file. Give the path of an allocator\'s '
          "shared library, or 'auto', 'tcmalloc' or 'system'.")
    return chosen
  if not platform.startswith('linux'):  # LD_PRELOAD is the dynamic linker's of Linux.
    if chosen == 'tcmalloc':
      raise errors.AllocatorError(f'{ENVIRONMENT_VARIABLE}=tcmalloc is supported on Linux only; '
                                  f'unset it or set {ENVIRONMENT_VARIABLE}=system.')
    return None
  library = find()
  if library is None and chosen == 'tcmalloc':
    raise errors.AllocatorError(f'{ENVIRONMENT_VARIABLE}=tcmalloc but TCMalloc is not installed: '
                                f'{INSTALL_HINT}, or unset {ENVIRONMENT_VARIABLE}.')
  return library


def _command_line():
  """This process's argv as the kernel has it (sys.argv loses `python -c CODE` and -X flags)."""
  with open('/proc/self/cmdline', 'rb') as cmdline:
    return [os.fsdecode(arg) for arg in cmdline.read().split(b'\0')[:-1]]


def use_chosen_allocator(environ=None, execve=os.execve, find=find_tcmalloc):
  """Re-executes this process with the allocator VLAE_TF_ALLOCATOR chooses; returns if none.

  Call it before TensorFlow is imported (nothing is lost: the process starts again from the top).
  """
  environ = os.environ if environ is None else environ
  library = library_to_preload(environ, find=find)
  if library is None:
    return
  try:
    arguments = _command_line()
  except OSError:  # No /proc: keep the allocator rather than guess the command line.
    return
  child = dict(environ)
  if library == GLIBC:
    child.update(GLIBC_TUNED)
  else:
    child['LD_PRELOAD'] = ':'.join(filter(None, [library, environ.get('LD_PRELOAD', '')]))
  child[_REEXECUTED] = '1'
  sys.stdout.flush()
  sys.stderr.flush()
  execve(sys.executable, [sys.executable] + arguments[1:], child)
