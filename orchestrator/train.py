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


if __name__ == "__main__":
    main()
