"""A Ray cluster started as a user starts one: ``ray start --head`` and ``ray start --address`` on
this machine, token authentication on (Ray 2.60's default once a token exists), stopped by PID.

Each node gets its own temp dir: nodes that share one also share Ray's runtime_resources folder, and a
node that unpacks a job's working_dir there (Ray unpacks it with overwrite) deletes the copy another
node's job driver runs in. On separate machines that folder is never shared.

Ray turns 127.0.0.1 into the machine's address for ``ray start`` and refuses worker nodes under its
single-machine switch, so the nodes listen on the machine's address, for the test's duration only.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Dict, List

import psutil

from tests.helpers import processes_using

RAY = str(Path(sys.executable).parent / "ray")
START_TIMEOUT_S = 60


def free_ports(count: int) -> List[int]:
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


class CliCluster:
    def __init__(self):
        self.root = Path(tempfile.mkdtemp(prefix="cc", dir="/tmp"))  # short: socket paths are limited
        self.token = self.root / "token"
        self.token.write_text(uuid.uuid4().hex)
        self.port, self.dashboard_port, agent_port, client_port = free_ports(4)
        self.head_args = ["--head", "--port", str(self.port), "--dashboard-port", str(self.dashboard_port),
                          "--dashboard-agent-listen-port", str(agent_port),
                          "--ray-client-server-port", str(client_port)]
        self.address = ""

    def env(self, **extra: str) -> Dict[str, str]:
        """The user's shell: the cluster's token in a file of its own (the real ~/.ray is left alone)."""
        env = {k: v for k, v in os.environ.items()
               if k not in ("RAY_ADDRESS", "RAY_AUTH_MODE", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "RAY_TMPDIR")}
        env["RAY_AUTH_TOKEN_PATH"] = str(self.token)
        env.update(extra)
        return env

    def start(self) -> "CliCluster":
        self.ray_start("head", self.head_args, self.env())  # token mode: Ray finds the token
        self.address = (self.root / "head" / "ray_current_cluster").read_text().strip()  # NODE_IP:PORT
        (agent_port,) = free_ports(1)
        # As the README says: a joining node needs RAY_AUTH_MODE=token (ray start --address never
        # turns it on by itself).
        self.ray_start("node", ["--address", self.address, "--dashboard-agent-listen-port", str(agent_port)],
                       self.env(RAY_AUTH_MODE="token"))
        return self

    def ray_start(self, name: str, args: List[str], env: Dict[str, str]) -> None:
        temp_dir = self.root / name
        done = subprocess.run([RAY, "start", *args, "--num-cpus", "1", "--temp-dir", str(temp_dir),
                               "--disable-usage-stats"], env=env, capture_output=True, text=True,
                              timeout=START_TIMEOUT_S)
        assert done.returncode == 0, f"ray start ({name}) failed:\n{done.stdout}\n{done.stderr}"

    @property
    def dashboard(self) -> str:
        return f"http://127.0.0.1:{self.dashboard_port}"

    def stop(self) -> None:
        """Kill every process of this cluster by PID (never ``ray stop``: it stops every Ray here)."""
        procs = [p for p in processes_using(self.root) if p.pid != os.getpid()]
        for proc in procs:
            try:
                proc.kill()
            except psutil.Error:
                pass
        psutil.wait_procs(procs, timeout=15)
        shutil.rmtree(self.root, ignore_errors=True)
