"""Checkpoint files: atomic writes, verified reads that fall back past damage, retention, trainer.resume."""

from __future__ import annotations

import hashlib
import io
import json
import os
from fractions import Fraction
from pathlib import Path
from typing import List

import pytest
import torch

from orchestrator import config as C
from orchestrator.checkpoint import state as S
from orchestrator.checkpoint.store import CheckpointStore, CorruptCheckpoint, resolve_resume


def payload(step: int) -> bytes:
    return f"checkpoint of step {step} ".encode() * 50 + bytes(range(256))


def make_store(directory: Path, warnings: List[str] = None, check_payload=None, **cfg) -> CheckpointStore:
    """A store of opaque payloads (bytes checks only) unless ``check_payload`` is given."""
    cfg.setdefault("keep_last", 100)
    return CheckpointStore(directory, C.CheckpointConfig(**cfg),
                           warn=(warnings.append if warnings is not None else pytest.fail), check_payload=check_payload)


def latest(store: CheckpointStore):
    """The newest good checkpoint's manifest and its (verified) bytes."""
    found = store.latest_good()
    return found.manifest, found.read()


def resolved(resume, store: CheckpointStore):
    found = resolve_resume(resume, store)
    return found.manifest, found.read()


def steps_on_disk(directory: Path):
    pts = sorted(int(p.stem.split("-")[1]) for p in directory.glob("step-*.pt"))
    jsons = sorted(int(p.stem.split("-")[1]) for p in directory.glob("step-*.json"))
    assert pts == jsons, "every checkpoint has its manifest and vice versa"
    return pts


# ----------------------------------------------------------------------------- save / read
def test_save_then_latest_good_round_trips_the_bytes(tmp_path):
    store = make_store(tmp_path / "ckpt")  # created on first save
    manifest = store.save(7, payload(7), epoch=2, metrics={"val/loss": 0.25})
    assert store.latest_good() is not None
    got_manifest, data = latest(store)
    assert data == payload(7)
    assert got_manifest == manifest
    assert (manifest.step, manifest.epoch, manifest.metrics) == (7, 2, {"val/loss": 0.25})
    assert manifest.bytes == len(payload(7))
    assert manifest.sha256 == hashlib.sha256(payload(7)).hexdigest()


def test_latest_good_is_the_highest_step_not_the_last_written(tmp_path):
    store = make_store(tmp_path)
    for step in (10, 30, 20):
        store.save(step, payload(step), epoch=0, metrics={})
    manifest, data = latest(store)
    assert manifest.step == 30 and data == payload(30)


def test_empty_store_has_no_latest(tmp_path):
    assert make_store(tmp_path / "nothing").latest_good() is None
    assert make_store(tmp_path).latest_good() is None


def test_files_are_written_atomically_leaving_no_temporary_files(tmp_path):
    store = make_store(tmp_path)
    for step in (1, 2, 3):
        store.save(step, payload(step), epoch=0, metrics={"val/loss": 1.0 / step})
    names = sorted(os.listdir(tmp_path))
    assert names == [f"step-{s:09d}.{ext}" for s in (1, 2, 3) for ext in ("json", "pt")]
    manifest = json.loads((tmp_path / "step-000000002.json").read_text())
    assert manifest["file"] == "step-000000002.pt" and manifest["step"] == 2


# ----------------------------------------------------------------------------- damage
def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:-100])


def flip_one_bit(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("damage", [truncate, flip_one_bit, Path.unlink], ids=["truncated", "bit-flip", "missing"])
def test_damaged_latest_checkpoint_is_reported_and_the_previous_one_returned(tmp_path, damage):
    warnings: List[str] = []
    store = make_store(tmp_path, warnings)
    for step in (1, 2, 3):
        store.save(step, payload(step), epoch=0, metrics={})
    damage(tmp_path / "step-000000003.pt")
    manifest, data = latest(store)
    assert manifest.step == 2 and data == payload(2)
    assert len(warnings) == 1 and "step 3" in warnings[0]


def test_damaged_checkpoint_is_refused_by_read(tmp_path):
    store = make_store(tmp_path)
    manifest = store.save(1, payload(1), epoch=0, metrics={})
    flip_one_bit(tmp_path / manifest.file)
    with pytest.raises(CorruptCheckpoint, match="checksum"):
        store.read(manifest)


def test_all_damaged_means_no_checkpoint_and_one_warning_each(tmp_path):
    warnings: List[str] = []
    store = make_store(tmp_path, warnings)
    for step in (1, 2):
        store.save(step, payload(step), epoch=0, metrics={})
        truncate(tmp_path / f"step-{step:09d}.pt")
    assert store.latest_good() is None
    assert len(warnings) == 2


def test_unreadable_manifest_is_reported_and_ignored(tmp_path):
    warnings: List[str] = []
    store = make_store(tmp_path, warnings)
    for step in (1, 2):
        store.save(step, payload(step), epoch=0, metrics={})
    (tmp_path / "step-000000002.json").write_text('{"step": 2, "fi')  # torn JSON
    manifest, data = latest(store)
    assert manifest.step == 1 and data == payload(1)
    assert any("step-000000002.json" in w for w in warnings)


def real_checkpoint(step: int) -> bytes:
    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1.0)
    return S.capture(S.Trainables(model, optimizer, scheduler, None), S.TrainState(step=step), 1)


def unloadable(kind: str) -> bytes:
    if kind == "not_a_torch_file":
        return b"PK\x03\x04 looks like a zip, is not one" * 20
    buffer = io.BytesIO()
    if kind == "foreign_object":  # refused by weights_only=True (no arbitrary unpickling)
        torch.save({"format_version": 1, "model": Fraction(1, 3)}, buffer)
    elif kind == "not_a_checkpoint":
        torch.save({"weights": torch.zeros(3)}, buffer)
    return buffer.getvalue()


@pytest.mark.parametrize("kind", ["not_a_torch_file", "foreign_object", "not_a_checkpoint"])
def test_a_checkpoint_that_passes_its_checksum_but_does_not_load_falls_back_to_the_previous(tmp_path, kind):
    # Before the load check, such a file was handed to every rank, each failed alike at the same step,
    # and the failure policy took it for a bug and stopped the run instead of trying the previous one.
    warnings: List[str] = []
    store = make_store(tmp_path, warnings, check_payload=S.check_loadable)
    store.save(10, real_checkpoint(10), epoch=0, metrics={})
    store.save(20, unloadable(kind), epoch=0, metrics={})  # its manifest matches: the checksum passes
    manifest, data = latest(store)
    assert manifest.step == 10
    assert S.load_payload(data)["train_state"]["step"] == 10
    (warning,) = warnings
    assert "step 20" in warning and "passes its checksum but does not load" in warning
    with pytest.raises(CorruptCheckpoint, match="does not load"):
        resolve_resume(str(tmp_path / "step-000000020.pt"), store)


def test_the_default_store_checks_that_checkpoints_load(tmp_path):
    store = CheckpointStore(tmp_path, C.CheckpointConfig(), warn=pytest.fail)
    store.save(5, real_checkpoint(5), epoch=0, metrics={})
    (manifest,) = store.manifests()
    assert store.read(manifest) == (tmp_path / manifest.file).read_bytes()
    store.save(6, unloadable("not_a_checkpoint"), epoch=0, metrics={})
    with pytest.raises(CorruptCheckpoint, match="lacks format_version, model"):
        store.read(store.manifests()[-1])


# ----------------------------------------------------------------------------- retention
def save_all(store: CheckpointStore, metric: str, values):
    for step, value in enumerate(values, start=1):
        store.save(step, payload(step), epoch=step, metrics={metric: value} if value is not None else {})


def test_retention_keeps_the_newest_and_the_best_by_lowest_loss(tmp_path):
    store = make_store(tmp_path, keep_last=2, keep_best=1, monitor="val/loss", mode="min")
    save_all(store, "val/loss", [0.9, 0.3, 0.5, 0.7, 0.8, 0.6])
    assert steps_on_disk(tmp_path) == [2, 5, 6]
    assert store.best().step == 2
    manifest, data = latest(store)
    assert manifest.step == 6 and data == payload(6)


def test_retention_keeps_the_best_by_highest_accuracy_in_max_mode(tmp_path):
    store = make_store(tmp_path, keep_last=1, keep_best=2, monitor="val/accuracy", mode="max")
    save_all(store, "val/accuracy", [0.5, 0.9, 0.4, 0.8, 0.6, 0.1])
    assert steps_on_disk(tmp_path) == [2, 4, 6]
    assert store.best().step == 2


def test_retention_with_keep_best_zero_keeps_only_the_newest(tmp_path):
    store = make_store(tmp_path, keep_last=3, keep_best=0)
    save_all(store, "val/loss", [0.1, 0.2, 0.3, 0.4, 0.5])
    assert steps_on_disk(tmp_path) == [3, 4, 5]


def test_checkpoints_without_the_monitored_metric_are_never_the_best(tmp_path):
    store = make_store(tmp_path, keep_last=1, keep_best=1, monitor="val/loss", mode="min")
    save_all(store, "val/loss", [None, 0.7, None, None])
    assert steps_on_disk(tmp_path) == [2, 4]
    assert store.best().step == 2


# ----------------------------------------------------------------------------- trainer.resume
def test_resume_null_is_a_fresh_start(tmp_path):
    store = make_store(tmp_path)
    store.save(1, payload(1), epoch=0, metrics={})
    assert resolve_resume(None, store) is None


def test_resume_auto_in_an_empty_run_is_a_fresh_start(tmp_path):
    assert resolve_resume("auto", make_store(tmp_path / "run" / "checkpoints")) is None


def test_resume_auto_takes_this_runs_newest_good_checkpoint(tmp_path):
    store = make_store(tmp_path)
    for step in (4, 8):
        store.save(step, payload(step), epoch=0, metrics={})
    manifest, data = resolved("auto", store)
    assert manifest.step == 8 and data == payload(8)


@pytest.mark.parametrize("which", ["run dir", "checkpoints dir"])
def test_resume_from_another_run_takes_its_newest_good_checkpoint(tmp_path, which):
    other_run = tmp_path / "old-run"
    warnings: List[str] = []
    other = make_store(other_run / "checkpoints", warnings)
    for step in (5, 10, 15):
        other.save(step, payload(step), epoch=0, metrics={})
    truncate(other_run / "checkpoints" / "step-000000015.pt")
    this = make_store(tmp_path / "new-run" / "checkpoints", warnings)
    target = other_run if which == "run dir" else other_run / "checkpoints"
    manifest, data = resolved(str(target), this)
    assert manifest.step == 10 and data == payload(10)
    assert warnings and "step 15" in warnings[0]


def test_resume_from_a_step_file_takes_exactly_that_checkpoint(tmp_path):
    other = make_store(tmp_path / "old" / "checkpoints")
    for step in (5, 10, 15):
        other.save(step, payload(step), epoch=0, metrics={})
    manifest, data = resolved(str(tmp_path / "old" / "checkpoints" / "step-000000010.pt"),
                                    make_store(tmp_path / "new"))
    assert manifest.step == 10 and data == payload(10)


def test_resume_from_a_damaged_step_file_refuses_it(tmp_path):
    other = make_store(tmp_path / "old")
    for step in (5, 10):
        other.save(step, payload(step), epoch=0, metrics={})
    flip_one_bit(tmp_path / "old" / "step-000000010.pt")
    with pytest.raises(CorruptCheckpoint):  # asked for exactly this one: no silent substitute
        resolve_resume(str(tmp_path / "old" / "step-000000010.pt"), make_store(tmp_path / "new"))


def test_resume_from_a_file_without_manifest_names_trainer_resume(tmp_path):
    stray = tmp_path / "weights.pt"
    stray.write_bytes(b"not a checkpoint of ours")
    with pytest.raises(FileNotFoundError, match=r"trainer\.resume"):
        resolve_resume(str(stray), make_store(tmp_path / "new"))


@pytest.mark.parametrize("path", ["does/not/exist", "empty-dir"])
def test_resume_from_a_bad_path_names_trainer_resume(tmp_path, path):
    (tmp_path / "empty-dir").mkdir()
    with pytest.raises(FileNotFoundError, match=r"trainer\.resume"):
        resolve_resume(str(tmp_path / path), make_store(tmp_path / "new"))


def test_resume_from_a_run_with_only_damaged_checkpoints_names_trainer_resume(tmp_path):
    other = make_store(tmp_path / "old" / "checkpoints", warnings=[])
    other.save(1, payload(1), epoch=0, metrics={})
    truncate(tmp_path / "old" / "checkpoints" / "step-000000001.pt")
    with pytest.raises(FileNotFoundError, match=r"trainer\.resume.*no intact checkpoint"):
        resolve_resume(str(tmp_path / "old"), make_store(tmp_path / "new", warnings=[]))
