"""Registers the typed schemas with Hydra's ConfigStore and freezes composed configs.

Each YAML file in ``conf/<group>/`` starts from a schema stored here
(``defaults: [/schema/<group>/<name>@_here_]``), so Hydra rejects unknown keys
and wrong types while composing. ``freeze`` then turns the composed DictConfig
into plain dataclasses, which runs the value checks; only plain dataclasses
cross into Ray.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from orchestrator import config as C

CONF_DIR = Path(__file__).resolve().parent.parent / "conf"

SCHEMAS = {
    "model": [C.MLPConfig, C.CNNConfig, C.GPTConfig],
    "data": [C.DigitsConfig, C.MNISTConfig, C.SyntheticClassificationConfig,
             C.SyntheticRegressionConfig, C.TextConfig],
    "optimizer": [C.SGDConfig, C.AdamConfig, C.AdamWConfig, C.RMSPropConfig],
    "scheduler": [C.ConstantSchedulerConfig, C.StepSchedulerConfig, C.CosineSchedulerConfig],
}
SINGLE_SCHEMAS = {
    "trainer": C.TrainerConfig,
    "checkpoint": C.CheckpointConfig,
    "stopping": C.StoppingConfig,
    "health": C.HealthConfig,
    "fault_tolerance": C.FaultToleranceConfig,
    "cluster": C.ClusterConfig,
    "chaos": C.ChaosConfig,
    "search": C.SearchConfig,
}


def register() -> None:
    cs = ConfigStore.instance()
    cs.store(name="schema", node=C.Config)
    for group, schemas in SCHEMAS.items():
        for schema in schemas:
            cs.store(group=f"schema/{group}", name=schema.name, node=schema)
    for group, schema in SINGLE_SCHEMAS.items():
        cs.store(group=f"schema/{group}", name="default", node=schema)


def freeze(cfg: DictConfig) -> C.Config:
    """Composed DictConfig -> checked plain dataclasses. Raises ConfigError naming the key."""
    try:
        frozen = OmegaConf.to_object(cfg)
    except C.ConfigError:
        raise
    except OmegaConfBaseException as err:
        # A missing mandatory value, e.g. data.path for data=mnist.
        key = getattr(err, "full_key", None) or "config"
        raise C.ConfigError(f"{key}: {err.msg if hasattr(err, 'msg') else err}") from None
    if not isinstance(frozen, C.Config):
        raise C.ConfigError(f"config: expected the orchestrator's schema, got {type(frozen).__name__}")
    reject_unknown_keys(frozen)
    return frozen


def reject_unknown_keys(obj, prefix: str = "") -> None:
    """Hydra's ``+key=value`` can add keys a schema does not have; they would be silently ignored."""
    if not dataclasses.is_dataclass(obj):
        return
    known = {f.name for f in dataclasses.fields(obj)}
    for name, value in vars(obj).items():
        if name not in known:
            raise C.ConfigError(f"{prefix}{name}: unknown key (not in {type(obj).__name__}); "
                                f"known keys: {sorted(known)}")
        reject_unknown_keys(value, f"{prefix}{name}.")


def composition_error(err: Exception) -> C.ConfigError:
    """Hydra's composition errors, with the cause that names the key."""
    cause = err.__cause__
    detail = f"\n{cause}" if cause is not None else ""
    return C.ConfigError(f"{err}{detail}")


def to_yaml(cfg: C.Config) -> str:
    return OmegaConf.to_yaml(OmegaConf.structured(cfg))


register()
