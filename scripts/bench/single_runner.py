"""`single` runner: one process, one thread, no process group, no DDP: the per-core compute floor."""

from __future__ import annotations

import argparse

from bench import common


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    common.add_common_args(parser)
    args = parser.parse_args()

    common.pin_threads()
    model = common.build_model(args.workload)
    result = common.train(model, args.workload, rank=0, world=1, steps=args.steps,
                          warmup=args.warmup, num_samples=args.num_samples)
    common.print_result(result)


if __name__ == "__main__":
    main()
