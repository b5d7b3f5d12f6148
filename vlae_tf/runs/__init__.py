"""Runs: the run directory a training run writes and every reader opens: its files, config.gin,
checkpoints and their integrity, and `opening.open_run`."""
