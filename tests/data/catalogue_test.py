"""Tests of catalogue.py: what every dataset is, independent of where it is loaded from."""

import pytest

from vlae_tf import errors
from vlae_tf.data import catalogue
from vlae_tf.data import datasets


def test_every_dataset_is_described():
  assert catalogue.NAMES == ('static_mnist', 'dynamic_mnist', 'omniglot',
                             'caltech101_silhouettes', 'cifar10')
  for name in catalogue.NAMES:
    info = catalogue.info(name)
    assert info.name == name and info.kind in ('binary', '8bit')
    assert set(info.split_sizes) == set(catalogue.SPLITS)
    assert info.split_sizes['train+valid'] == info.split_sizes['train'] + info.split_sizes['valid']
    assert name in catalogue.needs(name) and info.url in catalogue.needs(name)
  assert catalogue.info('cifar10').num_pixels == 3072


def test_unknown_names_are_one_error():
  with pytest.raises(errors.DatasetError, match="Unknown dataset 'mnist'; expected one of"):
    catalogue.info('mnist')


def test_datasets_presents_the_catalogue():
  assert datasets.info is catalogue.info and errors.DatasetError is errors.DatasetError
