"""Hyperparameter search where every trial is a full data-parallel gang.

Trials run concurrently when the cluster holds more than one gang and queue
otherwise; losing trials are pruned early, freeing their workers; a search
resumes after an interruption without re-running finished trials.
"""
