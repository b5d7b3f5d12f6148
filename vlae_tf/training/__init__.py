"""Training: the trainer (one step on every replica, Polyak averaging), the outer loop that calls
its actions (checkpoints, validation, summaries, progress, signals), the run directory and its
checkpoints, and tf.distribute."""
