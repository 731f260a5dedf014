"""Composing a config from overrides, as the command line does, without starting anything.

Its own module so that both the Python API (``orchestrator.api``) and the search (which composes
each trial) can import it without importing each other."""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence, Union

from orchestrator import config as C


def compose(overrides: Sequence[str] = (), config_dir: Optional[Union[str, Path]] = None,
            config_name: str = "config") -> C.Config:
    """The same composition and checks as the command line, without starting anything.
    ``config_dir``: a folder of the user's own YAMLs (conf/model/resnet.yaml, ...) composed with ours,
    as ``--config-dir`` does on the command line."""
    from hydra import compose as hydra_compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import HydraException

    from orchestrator.config import store as config_store

    overrides = list(overrides)
    if config_dir is not None:
        user_dir = Path(config_dir).expanduser().resolve()
        if not user_dir.is_dir():
            raise C.ConfigError(f"config_dir: no such folder: {user_dir}")
        overrides.append(f"hydra.searchpath=[file://{user_dir}]")
    try:
        if GlobalHydra.instance().is_initialized() and config_dir is None:
            # Inside the command line's @hydra.main (e.g. composing search trials): reuse its set-up.
            dict_cfg = hydra_compose(config_name=config_name, overrides=overrides)
        else:
            with initialize_config_dir(config_dir=str(config_store.CONF_DIR), version_base=None):
                dict_cfg = hydra_compose(config_name=config_name, overrides=overrides)
    except HydraException as err:
        raise config_store.composition_error(err) from None
    return config_store.freeze(dict_cfg)
