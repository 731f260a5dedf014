"""Command line: ``python -m orchestrator.train [overrides]``. Wiring only: compose, freeze, launch.

Exit codes: 0 completed, 1 failed, 2 bad configuration, 130 interrupted (checkpoint written).
"""

from __future__ import annotations

import time

STARTED = time.time()  # first thing: "command start" for the start-up timings

import sys  # noqa: E402
from pathlib import Path

import hydra  # noqa: E402
from hydra.core.hydra_config import HydraConfig
from hydra.errors import ConfigCompositionException, OverrideParseException, SearchPathException
from omegaconf import DictConfig

from orchestrator.config import store as config_store
from orchestrator.config import ConfigError

EXIT_FAILED, EXIT_CONFIG, EXIT_INTERRUPTED = 1, 2, 130


@hydra.main(config_path="../conf", config_name="config", version_base=None)
def main(dict_cfg: DictConfig) -> None:
    try:
        cfg = config_store.freeze(dict_cfg)
    except ConfigError as err:
        print(f"Configuration error: {err}", file=sys.stderr)
        sys.exit(EXIT_CONFIG)

    from orchestrator.api import run_frozen

    hydra_cfg = HydraConfig.get()
    run_dir = Path(hydra_cfg.runtime.output_dir)
    code = run_frozen(cfg, run_dir, command_start=STARTED, overrides=list(hydra_cfg.overrides.task))
    if code:
        sys.exit(code)


# Hydra's errors for a bad command line: an unknown group option (model=resnet), a wrong type
# (scaling.num_workers=abc), bad override syntax, a missing --config-dir.
HYDRA_CONFIG_ERRORS = (ConfigCompositionException, OverrideParseException, SearchPathException)


def cli() -> None:
    """``main`` with Hydra's own configuration errors exiting 2, like ours.

    Hydra composes the config before ``main`` runs and reports its own errors (``run_and_report`` in
    hydra/_internal/utils.py): it prints the message, without a traceback, then calls ``sys.exit(1)``
    inside its ``except`` block, so the exception it reported is the ``SystemExit``'s ``__context__``.
    Mapping only that exit code keeps Hydra's messages and everything else of its command line
    (--help, --cfg, -m) as it is. With HYDRA_FULL_ERROR=1 Hydra re-raises instead.
    """
    try:
        main()
    except SystemExit as stop:
        reported = stop.__context__
        if stop.code == EXIT_FAILED and isinstance(reported, HYDRA_CONFIG_ERRORS):
            if isinstance(reported, OverrideParseException):  # Hydra's message does not say which one
                print(f"Configuration error: cannot parse the override {reported.override!r}", file=sys.stderr)
            sys.exit(EXIT_CONFIG)
        raise
    except HYDRA_CONFIG_ERRORS:
        import traceback

        traceback.print_exc()  # the full trace asked for with HYDRA_FULL_ERROR=1, still exit 2
        sys.exit(EXIT_CONFIG)


if __name__ == "__main__":
    cli()
