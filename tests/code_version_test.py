"""Tests of vlae_tf/code_version.py: the commit that pieces of long work record."""

import os
import re
import subprocess

from vlae_tf import code_version


def test_the_commit_is_this_checkouts_head():
  root = os.path.dirname(os.path.dirname(os.path.abspath(code_version.__file__)))
  head = subprocess.run(['git', '-C', root, 'rev-parse', '--short', 'HEAD'], check=True,
                        capture_output=True, text=True).stdout.strip()
  assert re.fullmatch(r'[0-9a-f]{7,40}(-dirty)?', code_version.commit())
  assert code_version.commit().split('-')[0] == head


def test_without_git_the_commit_is_unknown(monkeypatch):
  code_version.commit.cache_clear()
  monkeypatch.setenv('PATH', '/nonexistent')
  try:
    assert code_version.commit() == 'unknown'
  finally:
    code_version.commit.cache_clear()
