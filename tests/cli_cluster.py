"""A Ray cluster started as a user starts one: ``ray start --head`` and ``ray start --address`` on
this machine, token authentication on (Ray 2.60's default once a token exists), stopped by PID.

Each node gets its own temp dir: nodes that share one also share Ray's runtime_resources folder, and a
node that unpacks a job's working_dir there (Ray unpacks it with overwrite) deletes the copy another
node's job driver runs in. On separate machines that folder is never shared.

Loopback only (no traffic to any address outside 127.0.0.0/8): Ray turns the literal 127.0.0.1 (and
localhost) into the machine's address for ``ray start`` and refuses worker nodes under its single-machine
switch, but it keeps any other node address, so both nodes are started with ``--node-ip-address
127.0.0.2`` (Linux routes all of 127.0.0.0/8 to lo). A driver that joins takes the node address of a raylet
on its machine (ray/_private/services.py get_node_to_connect_for_driver), so it and its workers use
127.0.0.2 too; the dashboard binds 127.0.0.1. Gloo binds lo (cluster.gloo_socket_ifname=lo, set by the
tests: lo carries 127.0.0.1 only, so the interface of 127.0.0.2 is not found by address).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Dict, List, Tuple

import psutil

from tests.loopback_watch import LoopbackWatch

RAY = str(Path(sys.executable).parent / "ray")
START_TIMEOUT_S = 60
NODE_IP = "127.0.0.2"  # loopback, but not the literal 127.0.0.1 that Ray rewrites
DASHBOARD_HOST = "127.0.0.1"  # Ray's default, said explicitly


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
        self.head_args = ["--head", "--port", str(self.port), "--dashboard-host", DASHBOARD_HOST,
                          "--dashboard-port", str(self.dashboard_port),
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
        done = subprocess.run([RAY, "start", *args, "--num-cpus", "1", "--node-ip-address", NODE_IP,
                               "--temp-dir", str(temp_dir),
                               "--disable-usage-stats"], env=env, capture_output=True, text=True,
                              timeout=START_TIMEOUT_S)
        assert done.returncode == 0, f"ray start ({name}) failed:\n{done.stdout}\n{done.stderr}"

    @property
    def dashboard(self) -> str:
        return f"http://{DASHBOARD_HOST}:{self.dashboard_port}"

    def run(self, command: List[str], env: Dict[str, str], cwd: Path,
            timeout: float) -> Tuple[subprocess.CompletedProcess, LoopbackWatch]:
        """Run a command against the cluster, watching the TCP sockets of the cluster's processes and of
        the command's own process tree (a driver, ``ray job submit``) while it runs."""
        client = subprocess.Popen(command, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True)
        with LoopbackWatch(lambda: self.processes() + process_tree(client.pid)) as watch:
            try:
                out, err = client.communicate(timeout=timeout)
            finally:
                if client.poll() is None:
                    client.kill()
                    client.communicate()
        return subprocess.CompletedProcess(command, client.returncode, out, err), watch

    def processes(self) -> List[psutil.Process]:
        """This cluster's processes and their children: Ray's workers rename themselves
        (ray::TrainWorker), so their command line no longer names the temp dir, but a raylet is their parent."""
        found = {}
        for proc in psutil.process_iter(["pid", "cmdline"]):
            if proc.pid != os.getpid() and self.started_here(proc):
                found.update((p.pid, p) for p in process_tree(proc.pid))
        return list(found.values())

    def started_here(self, proc: psutil.Process) -> bool:
        """Its command line names the cluster's folder (the nodes: --temp-dir), or its environment holds
        the cluster's token file: the commands run against it, and the Ray client server, which
        ``ray start --head`` leaves with no parent and no temp dir in its command line."""
        try:
            return str(self.root) in " ".join(proc.info["cmdline"] or []) or \
                proc.environ().get("RAY_AUTH_TOKEN_PATH") == str(self.token)
        except psutil.Error:
            return False

    def stop(self) -> None:
        """Kill every process of this cluster by PID (never ``ray stop``: it stops every Ray here)."""
        procs = self.processes()
        for proc in procs:
            try:
                proc.kill()
            except psutil.Error:
                pass
        psutil.wait_procs(procs, timeout=15)
        shutil.rmtree(self.root, ignore_errors=True)


def process_tree(pid: int) -> List[psutil.Process]:
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.Error:
        return []
