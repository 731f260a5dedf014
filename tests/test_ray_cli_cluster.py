"""The README's "On a Ray cluster" commands, as a user types them: ``ray start --head``, ``ray start
--address`` (token authentication on, as Ray 2.60 does once a token exists), a run that joins with
cluster.address=HOST:PORT, and one ``ray job submit``. Loopback only: each test checks that every TCP
connection of the cluster's processes and of the command it runs stays inside 127.0.0.0/8."""

from __future__ import annotations

import importlib.util
import json
import sys
import time

import pytest

from tests.cli_cluster import NODE_IP, RAY, CliCluster
from tests.helpers import REPO
from tests.loopback_watch import LoopbackWatch

pytestmark = [pytest.mark.ray, pytest.mark.multinode]

TINY = ("model=mlp", "trainer.max_epochs=1", "scaling.num_workers=2", "scaling.placement_strategy=STRICT_SPREAD",
        "scaling.placement_timeout_s=60", "failure.hang_timeout_s=60",
        "cluster.gloo_socket_ifname=lo")  # gloo on loopback (lo has 127.0.0.1, not the node IP 127.0.0.2)
SUBMIT_TRIES = 3  # "No available agent to submit job": the head's dashboard agent is still starting


@pytest.fixture(scope="module")
def cli_cluster():
    cluster = CliCluster()
    try:
        yield cluster.start()
    finally:
        cluster.stop()


def workers_nodes(run_dir):
    """The nodes the workers ran on; each worker's node address is the loopback one the nodes got."""
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "completed"
    assert {w["node_ip"] for w in summary["workers"]} == {NODE_IP}
    return {w["node_id"] for w in summary["workers"]}


def test_the_nodes_talk_over_loopback_only(cli_cluster):
    assert cli_cluster.address.startswith(f"{NODE_IP}:")
    watch = LoopbackWatch(cli_cluster.processes)  # the idle cluster: GCS, raylets, dashboard, agents
    watch.sample()
    watch.assert_loopback_only()


def test_run_joins_a_token_cluster_by_host_port_without_setting_the_auth_mode(cli_cluster, tmp_path):
    """Ray itself turns token mode on only for address=auto; with HOST:PORT we must, from the token at hand."""
    run_dir = tmp_path / "run"
    done, watch = cli_cluster.run([sys.executable, "-m", "orchestrator.train", f"hydra.run.dir={run_dir}",
                                   f"cluster.address={cli_cluster.address}", *TINY],
                                  env=cli_cluster.env(), cwd=tmp_path, timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]
    assert len(workers_nodes(run_dir)) == 2, "one worker on each node"
    watch.assert_loopback_only()


def test_a_refused_token_says_what_to_do_without_a_traceback(cli_cluster, tmp_path):
    wrong = tmp_path / "wrong_token"
    wrong.write_text("0" * 32)
    env = cli_cluster.env(RAY_AUTH_TOKEN_PATH=str(wrong), RAY_NUM_REDIS_GET_RETRIES="3")  # ~1 s a try
    done, watch = cli_cluster.run([sys.executable, "-m", "orchestrator.train", f"hydra.run.dir={tmp_path / 'run'}",
                                   f"cluster.address={cli_cluster.address}", *TINY],
                                  env=env, cwd=tmp_path, timeout=120)
    watch.assert_loopback_only()
    assert done.returncode == 1
    assert f"{cli_cluster.address} (cluster.address) requires token authentication" in done.stderr
    assert f"the token from {wrong} was refused" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.skipif(importlib.util.find_spec("aiohttp") is None,
                    reason="`ray job submit` needs ray[default]: pip install -e '.[cluster]'")
def test_ray_job_submit_runs_the_default_job_on_two_nodes(cli_cluster, tmp_path):
    run_dir = tmp_path / "job_run"  # outside the job's working dir, which Ray unpacks into its temp dir
    command = [RAY, "job", "submit", "--address", cli_cluster.dashboard, "--working-dir", str(REPO), "--",
               "python", "-m", "orchestrator.train", "cluster.address=auto", f"hydra.run.dir={run_dir}", *TINY]
    for attempt in range(SUBMIT_TRIES):
        done, watch = cli_cluster.run(command, env=cli_cluster.env(RAY_AUTH_MODE="token"), cwd=tmp_path,
                                      timeout=240)
        if "No available agent" not in done.stdout + done.stderr:
            break
        time.sleep(5)
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    assert "succeeded" in done.stdout + done.stderr
    assert len(workers_nodes(run_dir)) == 2
    watch.assert_loopback_only()
