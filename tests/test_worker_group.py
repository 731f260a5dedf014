"""Ranks and GPU visibility of a gang (pure: the helpers the gang uses, no Ray)."""

from __future__ import annotations

from orchestrator.worker.actor import WorkerInfo
from orchestrator.driver.worker_group import bundle_for, rank_order, shared_cuda_devices
from orchestrator import config as C


def info(index, node, gpus=(), ip="10.0.0.1"):
    return WorkerInfo(index=index, node_id=node, node_ip=ip, pid=1000 + index, gpu_ids=list(gpus))


def test_ranks_go_by_node_then_gpu_then_creation_order():
    infos = [info(0, "b", ["1"], ip="10.0.0.2"), info(1, "a", ["3"]), info(2, "a", ["0"]),
             info(3, "b", ["0"], ip="10.0.0.2")]
    assert rank_order(infos) == [2, 1, 3, 0]


def test_gpu_ids_sort_as_numbers_not_text():
    infos = [info(0, "a", ["10"]), info(1, "a", ["2"])]
    assert rank_order(infos) == [1, 0]


def test_workers_on_a_node_see_all_of_its_gang_gpus():
    infos = [info(0, "a", ["3"]), info(1, "a", ["1"]), info(2, "b", ["0"])]
    assert shared_cuda_devices(infos) == ["1,3", "1,3", "0"]


def test_cpu_workers_get_no_cuda_devices():
    assert shared_cuda_devices([info(0, "a"), info(1, "a")]) == [None, None]
    # trainer.device=cpu on GPU nodes: the CPU (gloo) path, GPUs left alone
    assert shared_cuda_devices([info(0, "a", ["0"])], use_gpus=False) == [None]


def test_uuid_gpu_ids_are_kept_as_text():
    infos = [info(0, "a", ["MIG-2b"]), info(1, "a", ["MIG-1a"])]
    assert shared_cuda_devices(infos) == ["MIG-1a,MIG-2b", "MIG-1a,MIG-2b"]


def test_one_bundle_per_worker_asks_for_its_cpus_and_gpu():
    assert bundle_for(C.ScalingConfig(cpus_per_worker=4, gpus_per_worker=1)) == {"CPU": 4.0, "GPU": 1.0}
    assert bundle_for(C.ScalingConfig(cpus_per_worker=1)) == {"CPU": 1.0}
