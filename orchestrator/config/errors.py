"""Configuration errors and the small checks every schema uses. No Hydra, no torch."""

from __future__ import annotations

# OmegaConf's marker for "must be set"; a plain string keeps schemas free of OmegaConf.
MISSING = "???"


class ConfigError(ValueError):
    """A configuration value that cannot work. The message starts with the dotted key."""


def require(ok: bool, key: str, rule: str, value) -> None:
    if not ok:
        raise ConfigError(f"{key} {rule} (got {value!r})")


def require_choice(key: str, value, choices) -> None:
    require(value in choices, key, f"must be one of {sorted(choices)}", value)
