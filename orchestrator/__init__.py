"""Data-parallel PyTorch training on Ray actors, configured with Hydra, watched in TensorBoard."""

from orchestrator.api import compose, run

__all__ = ["compose", "run"]
