"""Which code ran: the commit of the checkout that holds this package.

Long work runs in pieces that may run different commits (a run trained over days while its code
changed); each piece records the commit it ran (pieces.jsonl, an evaluation's pieces), and the
results tables name it.
"""

import functools
import os
import subprocess


@functools.lru_cache(maxsize=None)
def commit() -> str:
  """The short commit of the checkout that holds this package (+ '-dirty' when tracked files
  differ from it), or 'unknown' (an installed copy, or no git)."""
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  try:
    head = subprocess.run(['git', '-C', root, 'rev-parse', '--short', 'HEAD'], check=True,
                          capture_output=True, text=True, timeout=30).stdout.strip()
    dirty = subprocess.run(['git', '-C', root, 'status', '--porcelain', '--untracked-files=no'],
                           check=True, capture_output=True, text=True, timeout=30).stdout.strip()
  except (OSError, subprocess.SubprocessError):
    return 'unknown'
  return head + ('-dirty' if dirty else '')
