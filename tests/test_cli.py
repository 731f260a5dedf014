"""The command line end to end: its own embedded Ray, started and stopped by the run."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.helpers import REPO, train_command, wait_until_gone

pytestmark = pytest.mark.ray


def test_command_line_run_completes_and_leaves_no_process(tmp_path, own_ray_env):
    env = own_ray_env
    run_dir = tmp_path / "run"
    proc = subprocess.run(train_command(run_dir, "model=mlp", "trainer.max_epochs=2"), cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"tensorboard --logdir {run_dir / 'tb'}" in proc.stdout
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "completed"
    assert (run_dir / ".hydra" / "config.yaml").exists()  # Hydra's resolved config in the run dir
    assert wait_until_gone(Path(env["RAY_TMPDIR"])) == []


def test_command_line_failure_exits_nonzero_and_still_shuts_ray_down(tmp_path, own_ray_env):
    env = own_ray_env
    run_dir = tmp_path / "run"
    proc = subprocess.run(train_command(run_dir, "scaling.num_workers=16", "scaling.placement_timeout_s=2"),
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1
    assert "cannot hold the gang" in proc.stderr and "16 workers" in proc.stderr
    assert wait_until_gone(Path(env["RAY_TMPDIR"])) == []


# ----------------------------------------------------------------------------- bad data: exit 2, one line
def bad_data_files(folder: Path) -> dict:
    """A corrupt IDX file, an empty, a too short and a binary text file."""
    import struct

    mnist = folder / "mnist"
    mnist.mkdir()
    (mnist / "train-images-idx3-ubyte").write_bytes(b"\x1f\x8b\x08\x00garbage, not an IDX header")
    (mnist / "train-labels-idx1-ubyte").write_bytes(struct.pack(">BBBBI", 0, 0, 8, 1, 3) + b"\x00\x01\x02")
    (folder / "empty.txt").write_bytes(b"")
    (folder / "short.txt").write_text("too short")
    (folder / "binary.txt").write_bytes(bytes(range(128, 256)) * 64)
    return {"mnist": mnist / "train-images-idx3-ubyte", "empty": folder / "empty.txt",
            "short": folder / "short.txt", "binary": folder / "binary.txt"}


@pytest.mark.parametrize("case,overrides,message", [
    ("mnist", ["data=mnist", "model=mlp", "data.path={dir}"], "is not an IDX file"),
    ("empty", ["data=text", "model=gpt", "data.path={file}"], "is empty"),
    ("short", ["data=text", "model=gpt", "data.path={file}"], "too few for one training window"),
    ("binary", ["data=text", "model=gpt", "data.path={file}"], "is not UTF-8 text"),
    (None, ["data.batch_size=2000"], "data.batch_size=2000 is larger than a worker's share"),
])
def test_bad_data_exits_2_with_one_line_before_ray_starts(tmp_path, own_ray_env, case, overrides, message):
    files = bad_data_files(tmp_path)
    file = files.get(case)
    overrides = [o.format(dir=file.parent if file else "", file=file) for o in overrides]
    proc = subprocess.run(train_command(tmp_path / "run", *overrides), cwd=REPO, env=own_ray_env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr[-3000:]
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Configuration error: "), proc.stderr[-3000:]
    assert message in lines[0]
    assert ("data.path: " in lines[0] and str(file) in lines[0]) if file else "data.batch_size" in lines[0]
    assert not list(Path(own_ray_env["RAY_TMPDIR"]).iterdir()), "Ray must not start for bad data"


def test_a_batch_larger_than_a_user_datasets_share_exits_2_with_one_line_from_the_worker(tmp_path, own_ray_env):
    run_dir = tmp_path / "run"
    proc = subprocess.run(train_command(run_dir, "model=custom", "model._target_=tests.user_project.components.TinyNet",
                                        "+model.depth=2", "data=custom",
                                        "data._target_=tests.user_project.components.blobs", "data.batch_size=5000"),
                          cwd=REPO, env=own_ray_env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr[-3000:]
    output = proc.stdout + proc.stderr
    assert "Traceback" not in output and "File \"" not in output
    errors = [line for line in proc.stderr.splitlines() if line.startswith("Configuration error: ")]
    assert len(errors) == 1 and "data.batch_size=5000 is larger than a worker's share" in errors[0]
    assert "384 training samples" in errors[0]  # the size only the workers knew
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "failed" and len(summary["restarts"]) == 1  # not restarted: a config error
    assert wait_until_gone(Path(own_ray_env["RAY_TMPDIR"])) == []
