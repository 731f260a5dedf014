"""Search spaces: Optuna suggestions from config, and trial parameters as Hydra overrides (pure)."""

from __future__ import annotations

import itertools
import json
from typing import Any, Dict, List

from orchestrator import config as C


def override_value(value: Any) -> str:
    """A Python value as Hydra override text: [64, 32] -> [64,32], True -> true, 'adam' -> adam."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(override_value(v) for v in value) + "]"
    if isinstance(value, float):
        return repr(value)
    return str(value)


def as_overrides(params: Dict[str, Any]) -> List[str]:
    return [f"{key}={override_value(value)}" for key, value in params.items()]


def choice_label(value: Any) -> Any:
    """Optuna's categorical choices must be scalars; lists are searched by their text."""
    return json.dumps(value) if isinstance(value, (list, tuple, dict)) else value


def from_label(label: Any) -> Any:
    if isinstance(label, str) and label[:1] in "[{":
        return json.loads(label)
    return label


def suggest(trial, space: Dict[str, C.ParamConfig]) -> Dict[str, Any]:
    """Ask an Optuna trial for one value per key (define-by-run)."""
    params = {}
    for key, p in space.items():
        if p.type == "float":
            params[key] = trial.suggest_float(key, p.low, p.high, log=p.log)
        elif p.type == "int":
            params[key] = trial.suggest_int(key, int(p.low), int(p.high), log=p.log)
        else:
            params[key] = from_label(trial.suggest_categorical(key, [choice_label(v) for v in p.values]))
    return params


def grid_points(space: Dict[str, C.ParamConfig]) -> List[Dict[str, Any]]:
    keys = list(space)
    return [dict(zip(keys, combo)) for combo in itertools.product(*(space[k].values for k in keys))]


def describe(params: Dict[str, Any]) -> str:
    return " ".join(as_overrides(params)) or "(defaults)"
