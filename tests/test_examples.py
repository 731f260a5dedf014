"""The example user projects, run as a user would: copied to a folder outside the repo, trained from
there on 2 Ray workers from the command line and from Python, metrics read back from TensorBoard."""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from tests.helpers import REPO, read_scalars, wait_until_gone

pytestmark = pytest.mark.ray
FAST = ["trainer.max_epochs=2", "trainer.log_every_n_steps=2"]


def project(name: str, tmp_path: Path) -> Path:
    folder = tmp_path / name
    shutil.copytree(REPO / "examples" / name, folder, ignore=shutil.ignore_patterns("__pycache__", "outputs"))
    assert not str(folder).startswith(str(REPO))
    return folder


def run(folder: Path, env, *command: str) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, *command], cwd=folder, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    return proc


@contextlib.contextmanager
def alongside(folder: Path, env, *command: str):
    """``command`` started now, in its own Ray temp dir, while the test runs others: the runs' Ray
    start-ups (most of a small run's wall time, mostly waiting) overlap. Yields a function that waits for it."""
    ray_tmp = tempfile.mkdtemp(prefix="rc", dir="/tmp")
    # Files, not pipes: nobody reads the output until the end, and a full pipe would stall the run.
    out, err = tempfile.TemporaryFile("w+"), tempfile.TemporaryFile("w+")
    proc = subprocess.Popen([sys.executable, *command], cwd=folder, env=dict(env, RAY_TMPDIR=ray_tmp),
                            stdout=out, stderr=err, text=True)

    def finish() -> str:
        proc.wait(timeout=300)
        out.seek(0), err.seek(0)
        stdout = out.read()
        assert proc.returncode == 0, stdout[-2000:] + err.read()[-4000:]
        assert not wait_until_gone(Path(ray_tmp)), "no Ray or worker process may survive"
        return stdout

    try:
        yield finish
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        out.close(), err.close()
        shutil.rmtree(ray_tmp, ignore_errors=True)


def summary(run_dir: Path):
    return json.loads((run_dir / "summary.json").read_text())


def test_image_folder_project_from_the_command_line_and_from_python(tmp_path, own_ray_env):
    folder = project("image_folder", tmp_path)
    run(folder, own_ray_env, "-m", "digit_images.make_pngs", "data/digits_png")
    assert len(list((folder / "data/digits_png").glob("*/*.png"))) == 1797

    cli_dir = folder / "outputs" / "cli"
    run(folder, own_ray_env, "-m", "orchestrator.train", "--config-dir", "conf", "+experiment=pngs",
        f"hydra.run.dir={cli_dir}", "trainer.max_epochs=3", "trainer.log_every_n_steps=2")
    result = summary(cli_dir)
    assert result["status"] == "completed" and result["world_size"] == 2
    assert result["metrics"]["val/accuracy"] > 0.5 and "val/f1" in result["metrics"]
    scalars = read_scalars(cli_dir / "tb")
    assert {"train/loss", "val/f1", "train/f1"} <= scalars.keys()
    assert (cli_dir / "checkpoints").is_dir()

    # One after the other: both runs are CPU-bound convnets, side by side they are no faster.
    proc = run(folder, own_ray_env, "train.py", "trainer.max_epochs=3")
    status, accuracy, run_dir = proc.stdout.strip().splitlines()[-1].split()
    assert status == "completed" and float(accuracy) > 0.5
    assert "train/loss" in read_scalars(folder / run_dir / "tb")  # run dirs are relative to the project
    assert not wait_until_gone(Path(own_ray_env["RAY_TMPDIR"]))


def test_dict_batch_project_with_a_step_function_and_resume(tmp_path, own_ray_env):
    folder = project("tabular_dicts", tmp_path)
    run_dir = folder / "outputs" / "houses"
    with alongside(folder, own_ray_env, "train.py", "trainer.max_epochs=2") as from_python:
        run(folder, own_ray_env, "-m", "orchestrator.train", "--config-dir", "conf", "+experiment=houses",
            f"hydra.run.dir={run_dir}", *FAST)
        first = summary(run_dir)
        assert first["status"] == "completed" and first["metrics"]["val/mae"] < 1.0
        assert {"train/mae", "val/mae", "val/rmse_sq"} <= read_scalars(run_dir / "tb").keys()

        # Resume the same run for two more epochs: it continues from its checkpoint, not from scratch.
        run(folder, own_ray_env, "-m", "orchestrator.train", "--config-dir", "conf", "+experiment=houses",
            f"hydra.run.dir={run_dir}", "trainer.resume=auto", "trainer.max_epochs=4", "trainer.log_every_n_steps=2")
        resumed = summary(run_dir)
        assert resumed["epochs"] == 4 and resumed["steps"] == 2 * first["steps"]
        assert any(e["event"] == "resume" for e in resumed["events"])
        stdout = from_python()

    status, mae, _ = stdout.strip().splitlines()[-1].split()
    assert status == "completed" and float(mae) < 1.5
