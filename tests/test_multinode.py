"""Multi-node: a two-raylet Ray cluster on this machine; the gang spreads one worker per node."""

from __future__ import annotations

import pytest

import orchestrator
from tests.conftest import read_scalars

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
        [f"cluster.address={two_node_cluster.address}", "cluster.placement_strategy=STRICT_SPREAD",
         "model=mlp", "trainer.max_epochs=2", "trainer.log_every_n_steps=5"],
        run_dir=tmp_path, show_progress=False)
    assert result.status == "completed"
    nodes = {w["node_id"] for w in result.summary["workers"]}
    assert len(nodes) == 2, "each worker must be on its own node"
    scalars = read_scalars(tmp_path / "tb")
    assert scalars["train/loss"] and scalars["val/accuracy"]
    assert {"worker/0/step_ms", "worker/1/step_ms"} <= scalars.keys()
    assert list((tmp_path / "checkpoints").glob("step-*.pt")), "rank 0's checkpoints reach the driver's disk"
