"""Data-parallel PyTorch training on Ray actors, configured with Hydra, watched in TensorBoard."""

from orchestrator.api import compose, run, run_search

__all__ = ["compose", "run", "run_search"]
