"""Training: the trainer (one step on every replica, Polyak averaging), and the outer loop that
calls its actions (checkpoints, validation, summaries, progress, signals) on a run directory
(vlae_tf/runs/) under a tf.distribute strategy (vlae_tf/distribution.py)."""
