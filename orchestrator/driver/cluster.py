"""Ray session for a run: start an embedded local Ray, or join an existing cluster.

Only what this module started is shut down, also after an error or Ctrl-C.
A Ray session that already exists in the process (a notebook, a test
fixture, a user's script) is used as is and left running.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import time
from pathlib import Path
from typing import Dict, Iterator, List, Optional

from orchestrator.driver import cluster_auth
from orchestrator import config as C

# Ray's single-machine switch (what it does on macOS and Windows): the node address becomes 127.0.0.1,
# so nothing of an embedded Ray listens on outside interfaces. Ray reads it once, at import, into
# ray_constants (the driver) and from the environment (the processes ray.init starts: raylet,
# workers). Both are set only while ray.init runs: a later join in the same process (a notebook)
# must get its real node address.
# An embedded Ray also reports no usage statistics: that would send traffic off the machine (and
# probe cloud metadata addresses) for a Ray the user never asked to start.
SINGLE_MACHINE_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_USAGE_STATS_ENABLED": "0"}


class ClusterJoinError(RuntimeError):
    """Joining cluster.address failed (unreachable, or the token was refused); the message says what to do."""

    def __init__(self, message: str, auth: bool = False):
        super().__init__(message)
        self.auth = auth  # the cluster refused us for want of a (valid) token


@contextlib.contextmanager
def loopback_only() -> Iterator[None]:
    from ray._private import ray_constants

    saved = ray_constants.ENABLE_RAY_CLUSTER
    ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        with scoped_env(SINGLE_MACHINE_ENV):
            yield
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = saved


@contextlib.contextmanager
def few_connect_retries(tries: int = 3) -> Iterator[None]:
    """ray.init retries its first GCS call about once a second, 20 times (read at call time)."""
    from ray._private import ray_constants

    saved = ray_constants.NUM_REDIS_GET_RETRIES
    ray_constants.NUM_REDIS_GET_RETRIES = tries
    try:
        yield
    finally:
        ray_constants.NUM_REDIS_GET_RETRIES = saved


@contextlib.contextmanager
def scoped_env(changes: Dict[str, str]) -> Iterator[None]:
    """Set environment variables (those the user has not set) for the block only."""
    added = {k: v for k, v in changes.items() if k not in os.environ}
    os.environ.update(added)
    try:
        yield
    finally:
        for key in added:
            os.environ.pop(key, None)


def runtime_env(cluster: C.ClusterConfig) -> Optional[Dict]:
    """Ship this project's packages to the cluster's nodes, so a node needs only Ray and PyTorch.

    By folder, found without importing: ``models`` imports torch, which another thread may be
    importing at this moment (the launcher loads torch while Ray starts), and torch must not be
    imported by two threads at once.
    """
    if cluster.address is None:
        return None
    folders = own_packages() if cluster.ship_code else []
    folders += [str(Path(module).resolve()) if "://" not in module else module for module in cluster.py_modules]
    env: Dict = {"py_modules": folders} if folders else {}
    if cluster.working_dir is not None:
        env["working_dir"] = str(Path(cluster.working_dir).resolve())
    if cluster.pip:
        env["pip"] = list(cluster.pip)
    return env or None


def own_packages() -> List[str]:
    folders = [str(Path(__file__).resolve().parent.parent)]  # the orchestrator package (this file is in driver/)
    models_spec = importlib.util.find_spec("models")
    if models_spec is not None and models_spec.submodule_search_locations:
        folders.append(str(list(models_spec.submodule_search_locations)[0]))
    return folders


class RaySession:
    def __init__(self, cluster: C.ClusterConfig):
        self.cluster = cluster
        self.started = False     # we own this Ray instance
        self.connected = False   # we connected this process (to a local or remote cluster)
        self.seconds = 0.0

    def __enter__(self) -> "RaySession":
        import ray

        t0 = time.perf_counter()
        if ray.is_initialized():
            return self
        common = dict(include_dashboard=self.cluster.include_dashboard, logging_level=logging.WARNING,
                      log_to_driver=True, configure_logging=True)
        if self.cluster.address is None:
            cluster_auth.apply(cluster_auth.local_env(os.environ))
            with loopback_only():
                ray.init(num_cpus=self.cluster.num_cpus or os.cpu_count(), **common)
            self.started = True
        else:
            self.join(common)
        self.connected = True
        self.seconds = time.perf_counter() - t0
        return self

    def join(self, common: Dict) -> None:
        """Join as the user's environment says; when the cluster wants a token, one is at hand and the
        user chose no mode, join again in token mode. Not token mode up front: a token-mode driver on a
        cluster without authentication refuses its own workers (their actors die at start)."""
        token_mode = cluster_auth.join_env(os.environ, Path.home())
        if token_mode:
            try:
                with few_connect_retries():  # a token cluster refuses at once; don't retry for 20 s
                    return self.connect(common)
            except ClusterJoinError as err:
                if not err.auth:
                    raise
            cluster_auth.apply(token_mode)
        self.connect(common)

    def connect(self, common: Dict) -> None:
        import ray

        address = self.cluster.address
        try:
            ray.init(address=address, runtime_env=runtime_env(self.cluster), **common)
        except Exception as err:  # Ray's AuthenticationError arrives bare or wrapped in a ConnectionError
            if cluster_auth.is_auth_failure(err):
                raise ClusterJoinError(cluster_auth.auth_failure_message(address, os.environ, Path.home()),
                                       auth=True) from None
            if isinstance(err, ConnectionError):
                raise ClusterJoinError(f"cannot reach the Ray cluster at {address} (cluster.address): {err}. "
                                       "Is it running (`ray status --address ADDRESS`)?") from None
            raise

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self.connected:
            import ray

            ray.shutdown()  # stops the local instance if we started it, else only disconnects
            self.connected = False
