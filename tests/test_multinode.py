"""Multi-node: a two-raylet Ray cluster on this machine; the gang spreads one worker per node."""

from __future__ import annotations

import threading

import pytest

import orchestrator
from tests.helpers import read_scalars

pytestmark = [pytest.mark.ray, pytest.mark.multinode]


@pytest.fixture(scope="module")
def two_node_cluster():
    import ray
    from ray.cluster_utils import Cluster

    if ray.is_initialized():
        ray.shutdown()  # the shared single-node session; multi-node tests run last
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    yield cluster
    if ray.is_initialized():
        ray.shutdown()
    cluster.shutdown()


def test_strict_spread_gang_runs_one_worker_per_node(two_node_cluster, tmp_path):
    result = orchestrator.run(
        [f"cluster.address={two_node_cluster.address}", "scaling.placement_strategy=STRICT_SPREAD",
         "model=mlp", "trainer.max_epochs=2", "trainer.log_every_n_steps=5"],
        run_dir=tmp_path, show_progress=False)
    assert result.status == "completed"
    nodes = {w["node_id"] for w in result.summary["workers"]}
    assert len(nodes) == 2, "each worker must be on its own node"
    scalars = read_scalars(tmp_path / "tb")
    assert scalars["train/loss"] and scalars["val/accuracy"]
    assert {"worker/0/step_ms", "worker/1/step_ms"} <= scalars.keys()
    assert list((tmp_path / "checkpoints").glob("step-*.pt")), "rank 0's checkpoints reach the driver's disk"


def test_user_code_outside_the_project_reaches_every_node(two_node_cluster, tmp_path):
    """cluster.py_modules and cluster.working_dir ship the user's code through the runtime env we build:
    a module that lives in a temp dir (on no worker's path) imports inside a task on each node."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    from orchestrator import config as C
    from orchestrator.driver.cluster import runtime_env

    package = tmp_path / "user_nets_7f3a"
    package.mkdir()
    (package / "__init__.py").write_text("def depth():\n    return 18\n")
    work = tmp_path / "work"
    work.mkdir()
    (work / "user_helpers_7f3a.py").write_text("NAME = 'helpers'\n")
    cfg = C.ClusterConfig(address=two_node_cluster.address, py_modules=[str(package)], working_dir=str(work))

    @ray.remote(num_cpus=1)
    def import_user_code():
        import user_helpers_7f3a
        import user_nets_7f3a

        return user_nets_7f3a.depth(), user_helpers_7f3a.NAME

    if ray.is_initialized():
        ray.shutdown()
    ray.init(address=two_node_cluster.address, runtime_env=runtime_env(cfg))
    try:
        nodes = [n["NodeID"] for n in ray.nodes() if n["Alive"]]
        assert len(nodes) == 2
        for node in nodes:  # one after the other: both raylets of this test share one runtime_resources folder
            task = import_user_code.options(scheduling_strategy=NodeAffinitySchedulingStrategy(node, soft=False))
            assert ray.get(task.remote(), timeout=120) == (18, "helpers")
    finally:
        ray.shutdown()


def test_losing_a_node_shrinks_the_gang_and_the_run_completes(two_node_cluster, tmp_path):
    """Elastic: the node of one worker disappears; the run goes on with one worker from the last
    checkpoint, accumulating two micro-batches to keep the global batch."""
    other_nodes = [node for node in two_node_cluster.worker_nodes]
    removed = {}

    def remove_a_node(step, values):
        if not removed and step >= 40:
            # From another thread: a lost node does not pause the driver.
            threading.Thread(target=two_node_cluster.remove_node, args=(other_nodes[0],)).start()
            removed["step"] = step

    result = orchestrator.run(
        [f"cluster.address={two_node_cluster.address}", "scaling.placement_strategy=STRICT_SPREAD",
         "model=mlp", "trainer.max_steps=800", "trainer.max_epochs=1000", "trainer.log_every_n_steps=5",
         "checkpoint.every_n_steps=10", "checkpoint.every_epoch=false", "scaling.min_workers=1",
         "failure.restart_wait_s=3", "scaling.placement_timeout_s=5"],
        run_dir=tmp_path, show_progress=False, on_metrics=remove_a_node)
    assert removed, "the node was never removed"
    assert result.status == "completed" and result.summary["steps"] == 800
    (restart,) = result.summary["restarts"]
    assert restart["kind"] == "worker_died"
    assert restart["steps_lost"] <= 10 + 5, "no work lost beyond the last checkpoint"
    assert any(e["event"] == "elastic" for e in result.summary["events"])
    assert len(result.summary["workers"]) == 1
    scalars = read_scalars(tmp_path / "tb")
    assert scalars["train/global_batch"][-1][1] == scalars["train/global_batch"][0][1], "global batch kept"

