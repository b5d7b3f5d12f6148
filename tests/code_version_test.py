"""Tests of vlae_tf/code_version.py: the commit that pieces of long work record."""

import os
import re
import subprocess

from vlae_tf import code_version
from vlae_tf.runs import directory


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


def test_a_training_piece_records_the_commit_it_started_with(tmp_path, monkeypatch):
  """A commit made while a piece trains (the checkout moves on) is not the code the piece ran."""
  head = ['1111111']

  def fake_git(command, **unused_kwargs):
    out = head[0] if 'rev-parse' in command else ''
    return subprocess.CompletedProcess(command, 0, stdout=out + '\n', stderr='')

  code_version.commit.cache_clear()
  monkeypatch.setattr(code_version.subprocess, 'run', fake_git)
  try:
    model_dir = str(tmp_path / 'run')
    directory.prepare_training_run(model_dir, 'TRAIN_STEPS = 3\n', chief=True, began=0.0)
    head[0] = '2222222'  # A commit while the piece trains.
    directory.record_piece(model_dir, 0.0, 0, 3, 'finished')
  finally:
    code_version.commit.cache_clear()
  [piece] = directory.read_pieces(model_dir)
  assert piece['commit'] == '1111111'
