"""Ray session for a run: start an embedded local Ray, or join an existing cluster.

Only what this module started is shut down, also after an error or Ctrl-C.
A Ray session that already exists in the process (a notebook, a test
fixture, a user's script) is used as is and left running.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import sys
import time
from pathlib import Path
from typing import Dict, Optional

from orchestrator import config as C


def prefer_loopback(cluster: C.ClusterConfig) -> None:
    """An embedded Ray listens on loopback only. Must run before ``import ray``.

    Ray's own switch for single-machine use (what it does on macOS and Windows):
    the node address becomes 127.0.0.1, so nothing listens on outside interfaces.
    """
    if cluster.address is None and "ray" not in sys.modules:
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")


def runtime_env(cluster: C.ClusterConfig) -> Optional[Dict]:
    """Ship this project's packages to the cluster's nodes, so a node needs only Ray and PyTorch.

    By folder, found without importing: ``models`` imports torch, which another thread may be
    importing at this moment (the launcher loads torch while Ray starts), and torch must not be
    imported by two threads at once.
    """
    if cluster.address is None or not cluster.ship_code:
        return None
    folders = [str(Path(__file__).resolve().parent)]
    models_spec = importlib.util.find_spec("models")
    if models_spec is not None and models_spec.submodule_search_locations:
        folders.append(str(list(models_spec.submodule_search_locations)[0]))
    return {"py_modules": folders}


class RaySession:
    def __init__(self, cluster: C.ClusterConfig):
        self.cluster = cluster
        self.started = False     # we own this Ray instance
        self.connected = False   # we connected this process (to a local or remote cluster)
        self.seconds = 0.0

    def __enter__(self) -> "RaySession":
        prefer_loopback(self.cluster)
        import ray

        t0 = time.perf_counter()
        if ray.is_initialized():
            return self
        common = dict(include_dashboard=self.cluster.include_dashboard, logging_level=logging.WARNING,
                      log_to_driver=True, configure_logging=True)
        if self.cluster.address is None:
            ray.init(num_cpus=self.cluster.num_cpus or os.cpu_count(), **common)
            self.started = True
        else:
            ray.init(address=self.cluster.address, runtime_env=runtime_env(self.cluster), **common)
        self.connected = True
        self.seconds = time.perf_counter() - t0
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self.connected:
            import ray

            ray.shutdown()  # stops the local instance if we started it, else only disconnects
            self.connected = False
