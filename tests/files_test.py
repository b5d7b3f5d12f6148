"""Tests of vlae_tf/files.py: atomic writes with the modes a plain open() would give."""

import os
import stat

import pytest

from vlae_tf import files


@pytest.mark.parametrize('umask', [0o022, 0o027, 0o077])
def test_atomic_write_follows_the_umask(tmp_path, umask):
  previous = os.umask(umask)
  try:
    path = tmp_path / 'report.json'
    files.atomic_write_text(str(path), '{}\n')
    directory = tmp_path / 'made'
    directory.mkdir()
    files.apply_umask(str(directory), directory=True)
  finally:
    os.umask(previous)
  assert path.read_text() == '{}\n'
  assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask
  assert stat.S_IMODE(directory.stat().st_mode) == 0o777 & ~umask
  assert set(os.listdir(tmp_path)) == {'made', 'report.json'}  # no temporary file left


def test_atomic_write_leaves_the_old_file_when_writing_fails(tmp_path):
  path = tmp_path / 'config.gin'
  path.write_text('old\n')

  class Unwritable:
    def __str__(self):
      raise RuntimeError('cannot render')

  with pytest.raises(TypeError):  # raised by the write, after the temporary file exists
    files.atomic_write_bytes(str(path), Unwritable())
  assert path.read_text() == 'old\n'
  assert os.listdir(tmp_path) == ['config.gin']
