"""`raytrain` runner: Ray Train v2's TorchTrainer on a fresh local Ray that this process starts.

ray.init() is inside the timed command on purpose: Ray's start-up is part of the time to the
first step. Rank 0's timings come back as the training function's return value
(Result.return_value, rank 0 only); Result.metrics would only hold metrics reported together
with a checkpoint in Train v2.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile

from bench import common


def train_loop_per_worker(config: dict) -> common.RunnerResult:
    import ray.train
    import ray.train.torch

    common.pin_threads()
    ctx = ray.train.get_context()
    # prepare_model wraps in DDP (gloo on CPU) when there is more than one worker.
    model = ray.train.torch.prepare_model(common.build_model(config["workload"]))
    return common.train(model, config["workload"], rank=ctx.get_world_rank(), world=ctx.get_world_size(),
                        steps=config["steps"], warmup=config["warmup"], num_samples=config["num_samples"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    common.add_common_args(parser)
    parser.add_argument("--workers", type=int, required=True)
    parser.add_argument("--storage-path", default=None,
                        help="Ray Train's run storage (default: a temporary folder, removed at the end)")
    args = parser.parse_args()

    try:
        import ray
        from ray.train import RunConfig, ScalingConfig
        from ray.train.torch import TorchTrainer
    except ImportError as exc:  # ray[train] is an optional extra: the harness skips this row
        print(f"cannot import ray.train: {exc}", file=sys.stderr)  # the whole message stays in the log
        common.print_skip("ray[train] not installed: pip install -e '.[bench]'")
        sys.exit(0)

    storage = args.storage_path or tempfile.mkdtemp(prefix="bench_raytrain_")
    # address="local": always start a new Ray, never join one that happens to run on this machine.
    ray.init(address="local")
    try:
        trainer = TorchTrainer(
            train_loop_per_worker,
            train_loop_config={"workload": args.workload, "steps": args.steps, "warmup": args.warmup,
                               "num_samples": args.num_samples},
            scaling_config=ScalingConfig(num_workers=args.workers, use_gpu=False,
                                         resources_per_worker={"CPU": 1}),
            run_config=RunConfig(name="bench", storage_path=storage),
        )
        result = trainer.fit()
    finally:
        ray.shutdown()
        if not args.storage_path:
            shutil.rmtree(storage, ignore_errors=True)
    if result.error is not None or result.return_value is None:
        raise SystemExit(f"Ray Train run failed: {result.error!r}")
    common.print_result(result.return_value)


if __name__ == "__main__":
    main()
