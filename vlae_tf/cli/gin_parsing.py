"""The old name of vlae_tf/gin_parsing.py, kept for existing imports (`from vlae_tf.cli import
gin_parsing`): the library parses gin too (bin/reproduce reads each experiment's training steps),
and library modules do not import the cli. This module *is* vlae_tf.gin_parsing, not a copy, so
patching one patches the other.
"""

import sys

from vlae_tf import gin_parsing

sys.modules[__name__] = gin_parsing
