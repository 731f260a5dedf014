"""Hydra launcher plugin: multirun jobs as concurrent data-parallel gangs."""
