"""Importance-weighted evaluation of a run's checkpoints, its reports and curves."""
