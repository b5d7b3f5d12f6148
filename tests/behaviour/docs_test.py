"""The documents hold: their commands run, their links land, and they speak of the project only.

Every `bin/<name>` or `vlae-<name>` command in README.md and docs/usage.md names a binary that
exists, flags that binary defines (read from its --helpfull, which loads no TensorFlow), gin files
that resolve and shipped pretrained models. Every relative link of README.md and docs/*.md points
at a file that exists, and an #anchor at one of its headings (GitHub's slugs). The project's text
(package, gin, tests, docs, bin, README) cites topics, commits and papers, not the history of its
own making, and no file outside the repository.
"""

import functools
import os
import pathlib
import re
import subprocess
import sys

import pytest

from vlae_tf import configs
from vlae_tf.cli import binaries
from vlae_tf.pretrained import catalogue

REPO = str(pathlib.Path(__file__).resolve().parents[2])
COMMAND_DOCS = ('README.md', 'docs/usage.md')
COMMAND = re.compile(r'(?:^|[\s;`(])((?:bin/|vlae-)([a-z]+)\b[^`;|#]*)')
FLAG = re.compile(r'\s--(?:\[no\])?([a-z_]+)(?:=(\S+))?')
LINK = re.compile(r'\[[^\]]*\]\(([^)\s]+)\)')
# Built from parts, so that this file does not match itself.
HISTORY = re.compile(r'\b(?:' + 'sess' + r'ions?|' + 'iss' + r'ues?)\s+#?\d', re.IGNORECASE)
OUTSIDE = re.compile(r'shared/(?:' + 'PAPER' + r'|' + 'AUTHORS_MODEL' + r')\.md')


def _read(path):
  with open(os.path.join(REPO, path)) as f:
    return f.read()


def _code_lines(text):
  """The lines of the fenced code blocks and the indented blocks, continuations joined."""
  lines, fenced = [], False
  for line in text.splitlines():
    if line.strip().startswith('```'):
      fenced = not fenced
      continue
    if fenced or line.startswith('    '):
      lines.append(line)
  joined, current = [], ''
  for line in lines:
    if line.rstrip().endswith('\\'):
      current += line.rstrip()[:-1] + ' '
    else:
      joined.append(current + line)
      current = ''
  return joined


def _commands():
  found = []
  for doc in COMMAND_DOCS:
    for line in _code_lines(_read(doc)):
      for match in COMMAND.finditer(line):
        found.append((doc, match.group(2), match.group(1).strip()))
  return found


@functools.lru_cache(maxsize=None)
def _flags_of(name):
  completed = subprocess.run(
      [sys.executable, os.path.join(REPO, 'bin', name), '--helpfull'], capture_output=True,
      text=True, timeout=120, check=False, cwd=REPO)
  assert completed.returncode == 0, completed.stderr[-2000:]
  return frozenset(re.findall(r'^\s+--(?:\[no\])?([a-z_]+)', completed.stdout, re.MULTILINE))


def test_the_documents_have_commands():
  commands = _commands()
  assert {doc for doc, _, _ in commands} == set(COMMAND_DOCS)
  assert {'train', 'eval', 'sample', 'export', 'compress'} <= {name for _, name, _ in commands}


@pytest.mark.parametrize('doc, name, command', _commands())
def test_every_documented_command_runs_as_written(doc, name, command):
  assert name in binaries.COMMANDS, f'{doc}: no binary {name}: {command}'
  defined = _flags_of(name)
  for flag, value in FLAG.findall(' ' + command):
    assert flag in defined, f'{doc}: bin/{name} has no --{flag}: {command}'
    if flag == 'gin_file' and value:
      assert configs.resolve(value.strip('"\'')) is not None, f'{doc}: no gin file {value}'
    if flag == 'pretrained' and value:
      assert value in catalogue.names(), f'{doc}: no pretrained model {value}'


def _slug(heading):
  """GitHub's anchor of a heading: lowercase, punctuation but hyphens dropped, spaces to '-'."""
  text = re.sub(r'[`*]', '', heading.strip().lower())
  return re.sub(r'[^\w\- ]', '', text).replace(' ', '-')


def _anchors(path):
  text = _read(path)
  text = re.sub(r'```.*?```', '', text, flags=re.DOTALL)
  return {_slug(line.lstrip('#')) for line in text.splitlines() if re.match(r'#{1,6} ', line)}


def _documents():
  docs = ['README.md'] + [os.path.join('docs', name) for name in sorted(os.listdir(
      os.path.join(REPO, 'docs'))) if name.endswith('.md')]
  return docs


@pytest.mark.parametrize('doc', _documents())
def test_every_link_lands(doc):
  problems = []
  for target in LINK.findall(_read(doc)):
    if re.match(r'[a-z]+://|mailto:', target):
      continue
    path, _, anchor = target.partition('#')
    resolved = os.path.normpath(os.path.join(os.path.dirname(doc), path)) if path else doc
    if not os.path.exists(os.path.join(REPO, resolved)):
      problems.append(f'{target}: no file {resolved}')
    elif anchor and resolved.endswith('.md') and anchor not in _anchors(resolved):
      problems.append(f'{target}: no heading #{anchor} in {resolved}')
  assert not problems, f'{doc}: ' + '; '.join(problems)


def _project_text_files():
  for top in ('vlae_tf', 'gin', 'tests', 'docs', 'bin'):
    for folder, _, names in os.walk(os.path.join(REPO, top)):
      if '__pycache__' in folder:
        continue
      for name in names:
        if (name.endswith(('.py', '.gin', '.md', '.sh', '.txt')) or top == 'bin'
            or top == 'vlae_tf' and name.endswith('.json')):
          yield os.path.relpath(os.path.join(folder, name), REPO)
  yield 'README.md'


def test_the_text_speaks_of_the_project_not_of_its_making():
  history, outside, named = [], [], []
  for path in _project_text_files():
    text = _read(path)
    for number, line in enumerate(text.splitlines(), 1):
      if HISTORY.search(line):
        history.append(f'{path}:{number}: {line.strip()[:100]}')
      if OUTSIDE.search(line):
        outside.append(f'{path}:{number}')
    if re.search(r'_s\d+\.|' + 'sess' + r'ion_?\d', os.path.basename(path)):
      named.append(path)
  assert not history, 'history words (cite the topic, commit or paper): ' + '\n'.join(history)
  assert not outside, 'files a clone does not have (docs/paper.md, docs/authors_code.md): ' + (
      ', '.join(outside))
  assert not named, f'files named after their making: {named}'


def test_the_readme_is_a_front_door():
  lines = _read('README.md').splitlines()
  assert len(lines) <= 170, f'README.md has {len(lines)} lines: the reference is docs/usage.md'
  assert max(len(line) for line in lines) <= 300
