"""Data-parallel PyTorch training on Ray actors, configured with Hydra, watched in TensorBoard."""

from orchestrator.api import compose, run, run_search
from orchestrator.config.errors import ConfigError
from orchestrator.data.module import DataModule, Splits

__all__ = ["compose", "run", "run_search", "ConfigError", "RunFailed", "DataModule", "Splits"]


def __getattr__(name):
    if name == "RunFailed":  # lazily: the launcher imports Ray, which the command line loads later
        from orchestrator.driver.launcher import RunFailed

        return RunFailed
    raise AttributeError(f"module 'orchestrator' has no attribute {name!r}")
