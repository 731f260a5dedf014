"""A user's project: a tabular regression model whose batches are dicts, with its own step function."""
