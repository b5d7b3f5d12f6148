"""The binaries: flags, strict gin parsing, the quiet TensorFlow start-up, and one main per binary.

bin/<name> and the installed vlae-<name> commands (setup.py's entry points) both call
`run_binary(name)`. Importing this package loads no TensorFlow, so --help and flag errors are fast.
"""

from vlae_tf.cli.binaries import benchmark_command
from vlae_tf.cli.binaries import compress_command
from vlae_tf.cli.binaries import decompress_command
from vlae_tf.cli.binaries import eval_command
from vlae_tf.cli.binaries import export_command
from vlae_tf.cli.binaries import inspect_command
from vlae_tf.cli.binaries import reproduce_command
from vlae_tf.cli.binaries import run_binary
from vlae_tf.cli.binaries import sample_command
from vlae_tf.cli.binaries import train_command
from vlae_tf.cli.binaries import COMMANDS
