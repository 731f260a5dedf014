"""A user's project: a small image classifier trained on a folder of PNG files."""
