"""Checkpoints rank 0 writes to storage itself, asynchronous saves, and the transport decision.

Files, processes and crashes are real (a child process is SIGKILLed in the middle of a write); the
only fake is a test hook that slows the writer down (pure timing), so that the kill lands mid-write.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import List

import pytest
import torch

from orchestrator import config as C
from orchestrator.checkpoint import state as S
from orchestrator.checkpoint.files import SLOW_WRITE_ENV, CorruptCheckpoint, Manifest
from orchestrator.checkpoint.store import CheckpointStore
from orchestrator.checkpoint.transport import Transport, decide_transport
from orchestrator.checkpoint.writer import CheckpointWriter
from orchestrator.driver.run_sink import RunSink
from orchestrator.records import CheckpointRecord, MetricsRecord
from tests.helpers import REPO

# ----------------------------------------------------------------------------- the transport decision
DIRECT, DRIVER = True, False


@pytest.mark.parametrize("mode, dir_explicit, rank0_local, all_local, save, restore", [
    ("direct", False, False, False, DIRECT, DIRECT),   # asked for: the user vouches every node sees the dir
    ("driver", True, True, True, DRIVER, DRIVER),      # asked for: bytes through the driver, always
    ("auto", True, False, False, DIRECT, DIRECT),      # an explicit checkpoint.dir is shared storage
    ("auto", False, True, True, DIRECT, DIRECT),       # one machine: the driver sees every file
    ("auto", False, True, False, DIRECT, DRIVER),      # rank 0 is local, other ranks cannot read the run dir
    ("auto", False, False, False, DRIVER, DRIVER),     # rank 0 elsewhere: the driver cannot see its files
])
def test_the_transport_decision_table(mode, dir_explicit, rank0_local, all_local, save, restore):
    assert decide_transport(mode, dir_explicit, rank0_local, all_local) == Transport(save, restore)


def test_a_bad_transport_is_a_config_error_naming_the_key():
    with pytest.raises(C.ConfigError, match=r"checkpoint\.transport"):
        C.CheckpointConfig(transport="carrier-pigeon")


# ----------------------------------------------------------------------------- direct writes
def trainables(seed: int = 0) -> S.Trainables:
    torch.manual_seed(seed)
    model = torch.nn.Linear(64, 32)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.1)
    model(torch.randn(4, 64)).sum().backward()
    optimizer.step()
    return S.Trainables(model, optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1.0))


def commit_all(records: List, store_dir: Path) -> RunSink:
    sink = RunSink(str(store_dir), C.CheckpointConfig(keep_last=10))
    sink.push(records)
    return sink


def test_a_direct_write_is_committed_by_the_driver_and_reads_back_verified(tmp_path):
    records: List = []
    objects = trainables()
    writer = CheckpointWriter(records.append, directory=str(tmp_path), async_save=False)
    writer.save(5, S.capture_payload(objects, S.TrainState(step=5), 1), epoch=1, metrics={"val/loss": 0.5})
    timing, record = records
    assert isinstance(timing, MetricsRecord) and {"checkpoint/blocked_ms", "checkpoint/write_ms"} == timing.values.keys()
    assert record.payload is None and record.manifest.writer == "rank0"  # only the manifest travels
    assert os.listdir(tmp_path) == ["step-000000005.pt"], "no manifest before the driver commits; no temp file"

    sink = commit_all(records, tmp_path)
    assert sink.drain()[1] == record
    found = CheckpointStore(tmp_path, C.CheckpointConfig(), warn=pytest.fail).latest_good()
    assert found.manifest == record.manifest
    payload = S.load_payload(found.read())  # weights_only loading
    assert torch.equal(payload["model"]["weight"], objects.model.weight)
    assert json.loads((tmp_path / "step-000000005.json").read_text())["sha256"] == record.manifest.sha256


def test_the_driver_refuses_a_manifest_for_a_file_it_cannot_see(tmp_path):
    store = CheckpointStore(tmp_path, C.CheckpointConfig())
    ghost = Manifest(step=3, epoch=0, file="step-000000003.pt", bytes=10, sha256="0" * 64, writer="rank0")
    with pytest.raises(CorruptCheckpoint, match="checkpoint.transport=driver"):
        store.commit(ghost)
    (tmp_path / ghost.file).write_bytes(b"12345")
    with pytest.raises(CorruptCheckpoint, match="5 bytes on storage"):
        store.commit(ghost)
    assert store.manifests() == []


def test_a_worker_refuses_a_file_that_no_longer_matches_its_manifest(tmp_path):
    records: List = []
    CheckpointWriter(records.append, str(tmp_path)).save(1, S.capture_payload(trainables(), S.TrainState(), 1), 0, {})
    commit_all(records, tmp_path)
    found = CheckpointStore(tmp_path, C.CheckpointConfig()).latest_good()
    data = bytearray(found.path.read_bytes())
    data[len(data) // 2] ^= 1
    found.path.write_bytes(bytes(data))
    with pytest.raises(CorruptCheckpoint, match="checksum"):
        found.read()


# ----------------------------------------------------------------------------- asynchronous saves
def test_an_async_save_writes_the_state_of_its_step_while_training_changes_it(tmp_path, monkeypatch):
    monkeypatch.setenv(SLOW_WRITE_ENV, "0.5")
    records: List = []
    objects = trainables()
    before = objects.model.weight.detach().clone()
    writer = CheckpointWriter(records.append, str(tmp_path), async_save=True)
    started = time.perf_counter()
    writer.save(1, S.capture_payload(objects, S.TrainState(step=1), 1), 0, {}, blocked_since=started)
    assert time.perf_counter() - started < 0.5, "save returned before the (slowed) write finished"
    with torch.no_grad():
        objects.model.weight.add_(1.0)  # training goes on, in place, while the file is written
    assert records == [], "nothing is sent before the file is complete"
    writer.save(2, S.capture_payload(objects, S.TrainState(step=2), 1), 0, {})  # waits for the first: one in flight
    assert [type(r) for r in records] == [MetricsRecord, CheckpointRecord]
    writer.wait()
    timing = records[0].values
    assert timing["checkpoint/write_ms"] >= 500 > timing["checkpoint/blocked_ms"]
    commit_all(records, tmp_path)
    first = CheckpointStore(tmp_path, C.CheckpointConfig()).manifests()[0]
    saved = S.load_payload((tmp_path / first.file).read_bytes())["model"]["weight"]
    assert torch.equal(saved, before)


def test_an_error_in_a_background_write_is_raised_on_the_training_thread(tmp_path):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the checkpoint folder should be")
    writer = CheckpointWriter(lambda record: None, str(blocker), async_save=True)
    writer.save(1, S.capture_payload(trainables(), S.TrainState(), 1), 0, {})
    with pytest.raises(OSError):
        writer.wait()


CRASHING_WRITER = textwrap.dedent("""
    import sys, torch
    from orchestrator import config as C
    from orchestrator.checkpoint import state as S
    from orchestrator.checkpoint.writer import CheckpointWriter
    from orchestrator.driver.run_sink import RunSink

    folder = sys.argv[1]
    sink = RunSink(folder, C.CheckpointConfig())
    model = torch.nn.Linear(256, 256)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    objects = S.Trainables(model, opt, torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0))
    writer = CheckpointWriter(lambda record: sink.push([record]), folder, async_save=True)
    writer.save(10, S.capture_payload(objects, S.TrainState(step=10), 1), 0, {})
    writer.wait()
    import os
    os.environ["{env}"] = "60"  # the next write stalls half-way, until the parent kills this process
    writer.save(20, S.capture_payload(objects, S.TrainState(step=20), 1), 0, {})
    print("writing 20", flush=True)
    writer.wait()
""").replace("{env}", SLOW_WRITE_ENV)


def test_a_crash_in_the_middle_of_an_async_write_leaves_the_previous_checkpoint_usable(tmp_path):
    child = subprocess.Popen([sys.executable, "-c", CRASHING_WRITER, str(tmp_path)], cwd=REPO,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 60
        # Non-empty: the temp file exists (empty) a moment before the first bytes are written and flushed.
        while not [p for p in tmp_path.glob(".step-000000020.pt.tmp-*") if p.stat().st_size > 0]:
            assert child.poll() is None, child.stderr.read()[-3000:]
            assert time.time() < deadline, "the second write never started"
            time.sleep(0.05)
        os.kill(child.pid, signal.SIGKILL)  # a real crash, with the file half written
        child.wait(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
    (partial,) = tmp_path.glob(".step-000000020.pt.tmp-*")
    assert partial.stat().st_size > 0
    assert not (tmp_path / "step-000000020.json").exists() and not (tmp_path / "step-000000020.pt").exists()
    store = CheckpointStore(tmp_path, C.CheckpointConfig(), warn=pytest.fail)
    found = store.latest_good()
    assert found.manifest.step == 10
    assert S.load_payload(found.read())["train_state"]["step"] == 10
    store.save(30, S.capture(trainables(), S.TrainState(step=30), 1), epoch=0, metrics={})
    assert not partial.exists(), "the next commit clears a dead write's temporary file"


# ----------------------------------------------------------------------------- end to end, on Ray
RUN = ["model=mlp", "trainer.max_steps=40", "trainer.max_epochs=100", "trainer.log_every_n_steps=5",
       "checkpoint.every_n_steps=10", "checkpoint.every_epoch=false", "checkpoint.keep_last=10",
       "failure.restart_wait_s=1"]


def final_checkpoint(run_dir: Path):
    manifests = [json.loads(p.read_text()) for p in sorted((run_dir / "checkpoints").glob("step-*.json"))]
    payload = S.load_payload((run_dir / "checkpoints" / manifests[-1]["file"]).read_bytes())
    return manifests, payload


def kill_the_writer_of(step: int, folder: Path, proc: subprocess.Popen, seconds: float = 180) -> int:
    """SIGKILL the worker process writing ``step`` (its pid ends the temp file's name) mid-write."""
    deadline = time.time() + seconds
    while time.time() < deadline:
        assert proc.poll() is None, proc.stderr.read()[-3000:]
        for partial in folder.glob(f".step-{step:09d}.pt.tmp-*"):
            pid = int(partial.name.rsplit("-", 1)[1])
            os.kill(pid, signal.SIGKILL)
            return pid
        time.sleep(0.05)
    raise TimeoutError(f"no write of step {step} seen within {seconds}s")


@pytest.mark.ray
def test_a_worker_killed_mid_async_write_resumes_from_the_previous_checkpoint_bit_exactly(
        tmp_path, own_ray_env, checkpoint_reference):
    from tests.helpers import read_scalars, train_command

    crashed = tmp_path / "crashed"
    env = dict(own_ray_env, **{SLOW_WRITE_ENV: "1.5"})  # every write stalls 1.5 s half-way: the kill lands mid-write
    # failure.recovery=disk: this is about the checkpoint on disk (a live peer would heal without it).
    proc = subprocess.Popen(train_command(crashed, *RUN, "failure.recovery=disk"), cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        kill_the_writer_of(20, crashed / "checkpoints", proc)
        _, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err[-3000:]
    summary = json.loads((crashed / "summary.json").read_text())
    assert summary["checkpoints"]["transport"] == {"save": "direct", "restore": "direct"}
    (restart,) = summary["restarts"]
    assert restart["kind"] == "worker_died" and restart["resume_step"] == 10, "resumed from the one before"
    manifests, crashed_state = final_checkpoint(crashed)
    assert [m["step"] for m in manifests] == [10, 20, 30, 40]
    assert {m["writer"] for m in manifests} == {"rank0"}, "written by rank 0 itself (auto: one machine)"
    scalars = read_scalars(crashed / "tb")
    assert max(v for _, v in scalars["checkpoint/write_ms"]) >= 1500 and "checkpoint/blocked_ms" in scalars

    # The reference: uninterrupted, synchronous, with the bytes sent through the driver (the fallback path).
    reference_manifests, reference_state = final_checkpoint(checkpoint_reference)
    assert {m["writer"] for m in reference_manifests} == {"driver"}
    assert crashed_state["train_state"]["step"] == reference_state["train_state"]["step"] == 40
    for key, value in reference_state["model"].items():
        assert torch.equal(crashed_state["model"][key], value), f"{key} differs after the resume"
    for a, b in zip(crashed_state["optimizer"]["state"].values(), reference_state["optimizer"]["state"].values()):
        assert all(torch.equal(a[name], b[name]) for name in b), "optimizer state differs after the resume"
