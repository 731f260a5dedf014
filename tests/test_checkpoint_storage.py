"""checkpoint.dir as an fsspec URL: the storage decision, fsspec round trips (memory:// in one process),
a bad scheme at composition, and a real run on Ray with a file:// URL that resumes bit-exactly."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path
from typing import List

import pytest
import torch

from orchestrator import config as C
from orchestrator.checkpoint import state as S
from orchestrator.checkpoint import storage
from orchestrator.checkpoint.files import CorruptCheckpoint
from orchestrator.checkpoint.store import CheckpointStore
from orchestrator.checkpoint.writer import CheckpointWriter
from orchestrator.driver.run_sink import RunSink
from tests.helpers import REPO
from tests.test_checkpoint_direct import RUN, trainables


@pytest.mark.parametrize("protocol, atomic", [
    (None, True), ("file", True), ("local", True),  # local files: temp name, fsync, os.replace
    ("memory", True),                                # one dict entry moved
    ("s3", False), ("gs", False), ("az", False),     # object stores: mv is copy + delete
])
def test_which_filesystems_get_a_temp_name_and_rename(protocol, atomic):
    assert storage.renames_atomically(protocol) is atomic


def test_a_file_url_and_a_plain_path_are_the_same_local_folder(tmp_path):
    for location in (f"file://{tmp_path}/ck", str(tmp_path / "ck")):
        opened = storage.open_storage(location)
        assert isinstance(opened, storage.LocalStorage) and opened.folder == tmp_path / "ck"
    assert isinstance(storage.open_storage("memory://bucket/ck"), storage.FsspecStorage)


def test_an_unknown_url_scheme_is_a_config_error_naming_checkpoint_dir():
    with pytest.raises(C.ConfigError, match=r"checkpoint\.dir: cannot use 'nosuchfs://bucket/ck'"):
        C.CheckpointConfig(dir="nosuchfs://bucket/ck")
    C.CheckpointConfig(dir="memory://bucket/ck")  # known schemes pass; nothing is opened


def test_the_command_line_fails_with_exit_2_before_anything_starts(tmp_path):
    run_dir = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-m", "orchestrator.train", "checkpoint.dir=nosuchfs://bucket/ck",
                           f"hydra.run.dir={run_dir}"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "checkpoint.dir" in proc.stdout + proc.stderr
    assert not (run_dir / "config.yaml").exists(), "failed at composition, before the run dir was set up"


@pytest.fixture(params=[True, False], ids=["rename", "write-then-manifest"])
def memory_url(request, monkeypatch):
    """A fresh memory:// folder, written with a temp name + mv, or straight under the final name."""
    protocols = {"memory"} if request.param else set()
    monkeypatch.setattr(storage, "ATOMIC_RENAME_PROTOCOLS", protocols)
    url = f"memory://ckpt-{uuid.uuid4().hex}/run"
    yield url
    fs = storage.open_storage(url).fs
    if fs.exists(url):
        fs.rm(url, recursive=True)


def test_checkpoints_on_fsspec_storage_are_committed_verified_retained_and_restored(memory_url):
    records: List = []
    objects = trainables()
    writer = CheckpointWriter(records.append, directory=memory_url, async_save=True)
    for step in (10, 20, 30):
        with torch.no_grad():
            objects.model.weight.add_(1.0)
        writer.save(step, S.capture_payload(objects, S.TrainState(step=step), 1), epoch=0, metrics={})
    writer.wait()
    sink = RunSink(memory_url, C.CheckpointConfig(keep_last=2, keep_best=0))
    sink.push(records)

    store = CheckpointStore(memory_url, C.CheckpointConfig(keep_last=2, keep_best=0), warn=pytest.fail)
    assert [m.step for m in store.manifests()] == [20, 30], "retention applies on fsspec storage too"
    assert store.directory.names("*") == ["step-000000020.json", "step-000000020.pt",
                                          "step-000000030.json", "step-000000030.pt"], "no temp files left"
    found = store.latest_good()  # SHA-256 and a trial torch.load, through fsspec
    assert found.manifest.step == 30 and found.directory == memory_url
    restored = S.load_payload(found.read())  # what every worker does on restore
    assert torch.equal(restored["model"]["weight"], objects.model.weight)

    with store.directory.writing(found.manifest.file) as f:  # damage the newest: the previous one is used
        f.write(b"not a checkpoint")
    with pytest.raises(CorruptCheckpoint, match="checksum"):
        found.read()
    store.warn = lambda message: None
    assert store.latest_good().manifest.step == 20


def test_a_file_that_was_never_committed_is_no_checkpoint(memory_url):
    """What a writer killed mid-write leaves on a filesystem without rename: a file, no manifest."""
    data = storage.open_storage(memory_url)
    storage.write_bytes(data, "step-000000010.pt", b"half a checkpoint")
    assert CheckpointStore(memory_url, C.CheckpointConfig(), warn=pytest.fail).latest_good() is None


# ----------------------------------------------------------------------------- end to end, on Ray
def with_steps(overrides: List[str], steps: int) -> List[str]:
    return [o for o in overrides if not o.startswith("trainer.max_steps=")] + [f"trainer.max_steps={steps}"]


def final_state(folder: Path):
    manifests = [json.loads(p.read_text()) for p in sorted(folder.glob("step-*.json"))]
    return manifests, S.load_payload((folder / manifests[-1]["file"]).read_bytes())


@pytest.mark.ray
def test_a_run_with_a_file_url_checkpoint_dir_resumes_bit_exactly(tmp_path, checkpoint_reference):
    import orchestrator

    storage_dir = tmp_path / "shared" / "ckpts"
    url = [f"checkpoint.dir=file://{storage_dir}"]
    run_dir = tmp_path / "run"
    orchestrator.run(with_steps(RUN, 20) + url, run_dir=run_dir, show_progress=False)
    first, _ = final_state(storage_dir)
    assert first[-1]["step"] == 20 and {m["writer"] for m in first} == {"rank0"}
    assert not (run_dir / "checkpoints").exists(), "nothing went to the run dir"

    resumed = orchestrator.run(RUN + url + ["trainer.resume=auto"], run_dir=run_dir, show_progress=False)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert resumed.status == "completed" and summary["checkpoints"]["transport"] == {"save": "direct",
                                                                                      "restore": "direct"}
    manifests, state = final_state(storage_dir)
    assert state["train_state"]["step"] == 40

    # Uninterrupted, in the run dir (test_checkpoint_direct's reference: the same weights whatever the transport).
    _, reference_state = final_state(checkpoint_reference / "checkpoints")
    for key, value in reference_state["model"].items():
        assert torch.equal(state["model"][key], value), f"{key} differs after the resume"
    for a, b in zip(state["optimizer"]["state"].values(), reference_state["optimizer"]["state"].values()):
        assert all(torch.equal(a[name], b[name]) for name in b), "optimizer state differs after the resume"
