"""Registers the typed schemas with Hydra's ConfigStore and freezes composed configs.

Each built-in YAML file in ``conf/<group>/`` starts from a schema stored here
(``defaults: [/schema/<group>/<name>@_here_]``), so Hydra rejects unknown keys and wrong types
while composing. A user's YAML (in their own ``--config-dir``) may instead be a plain
``_target_`` node. ``freeze`` turns the composed DictConfig into plain dataclasses (and dicts for
user nodes), which runs the value checks, then checks every user component's import path and
signature; only plain data crosses into Ray.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from orchestrator import config as C
from orchestrator.components import losses, models, optimizers, registry, schedulers
from orchestrator.data import builtin

CONF_DIR = Path(__file__).resolve().parent.parent.parent / "conf"

SCHEMAS = {
    "model": models.SCHEMAS,
    "data": builtin.SCHEMAS,
    "loss": losses.SCHEMAS,
    "optimizer": optimizers.SCHEMAS,
    "scheduler": schedulers.SCHEMAS,
}
SINGLE_SCHEMAS = {
    "trainer": C.TrainerConfig,
    "checkpoint": C.CheckpointConfig,
    "stopping": C.StoppingConfig,
    "health": C.HealthConfig,
    "scaling": C.ScalingConfig,
    "failure": C.FailureConfig,
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
    apply_deprecated_keys(frozen)
    registry.check(frozen)
    return frozen


def apply_deprecated_keys(cfg: C.Config) -> None:
    """Old keys keep working for one release, with a message saying what replaces them."""
    import warnings

    if cfg.trainer.loss is not None:
        warnings.warn(f"trainer.loss is deprecated: use loss={cfg.trainer.loss} (the loss group)", FutureWarning,
                      stacklevel=2)
        cfg.loss = next(s for s in losses.SCHEMAS if s.name == cfg.trainer.loss)()
        cfg.trainer.loss = None
        C.check_combination(cfg)


def reject_unknown_keys(obj, prefix: str = "") -> None:  # noqa: D401
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
    """The resolved config as YAML; a Python object given to ``orchestrator.run`` shows as its import path."""
    return OmegaConf.to_yaml(OmegaConf.create(plain(dataclasses.asdict(cfg))))


def plain(value):
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return f"{getattr(value, '__module__', '?')}.{getattr(value, '__qualname__', type(value).__name__)}"


register()
