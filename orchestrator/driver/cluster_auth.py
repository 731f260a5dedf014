"""Ray's token authentication (Ray >= 2.5x): which mode to use, and what to tell the user when a join fails.

How Ray 2.60 does it (ray/_private/authentication/authentication_token_setup.py, ray/_private/worker.py):
- the mode is the RAY_AUTH_MODE environment variable ("token" or "disabled");
- the token is RAY_AUTH_TOKEN, else the file RAY_AUTH_TOKEN_PATH, else ~/.ray/auth_token;
- a new local ``ray.init()`` turns token mode on (and writes ~/.ray/auth_token if missing), with a
  warning when RAY_AUTH_MODE was not set; ``ray start --head`` turns it on when a token exists;
- joining (``ray start --address``, ``ray.init(address=HOST:PORT)``) never turns it on by itself, so a
  join to a token cluster fails with InvalidAuthToken unless RAY_AUTH_MODE=token is set.

Decisions are pure functions of the environment and the home folder.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Dict, Mapping, Optional

AUTH_MODE = "RAY_AUTH_MODE"
TOKEN = "RAY_AUTH_TOKEN"
TOKEN_PATH = "RAY_AUTH_TOKEN_PATH"


def token_source(environ: Mapping[str, str], home: Path) -> Optional[str]:
    """Where Ray would read the token from (in Ray's order), or None when there is none."""
    if environ.get(TOKEN, "").strip():
        return TOKEN
    if environ.get(TOKEN_PATH):
        return environ[TOKEN_PATH] if Path(environ[TOKEN_PATH]).is_file() else None
    default = home / ".ray" / "auth_token"
    return str(default) if default.is_file() else None


def join_env(environ: Mapping[str, str], home: Path) -> Dict[str, str]:
    """Joining a cluster: token mode (the fallback when the cluster refuses us) when a token is at hand
    and the user did not choose a mode.

    Ray does this itself only for address=auto; with HOST:PORT a cluster started by ``ray start --head``
    (token mode by default) would refuse us. Only as a fallback: a token-mode driver on a cluster without
    authentication refuses its own workers.
    """
    if environ.get(AUTH_MODE) is None and token_source(environ, home) is not None:
        return {AUTH_MODE: "token"}
    return {}


def local_env(environ: Mapping[str, str]) -> Dict[str, str]:
    """The embedded local Ray: Ray's own default (token mode), said explicitly, so Ray prints no
    warning the user can do nothing about. A mode the user set is kept."""
    return {} if environ.get(AUTH_MODE) is not None else {AUTH_MODE: "token"}


def apply(changes: Dict[str, str]) -> None:
    """Set the mode for this process and the Ray processes it starts. Ray caches its config; refresh it
    when Ray is already imported (a notebook's second run), as Ray's own switch does."""
    if not changes:
        return
    os.environ.update(changes)
    raylet = sys.modules.get("ray._raylet")
    config = getattr(raylet, "Config", None)
    if config is not None and hasattr(config, "initialize"):
        config.initialize("")


def is_auth_failure(err: BaseException) -> bool:
    """Ray reports a refused token as AuthenticationError, often wrapped (ConnectionError from ray.init)."""
    seen = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        if type(err).__name__ == "AuthenticationError" or "InvalidAuthToken" in str(err):
            return True
        err = err.__cause__ or err.__context__
    return False


def auth_failure_message(address: str, environ: Mapping[str, str], home: Path) -> str:
    source = token_source(environ, home)
    mode = environ.get(AUTH_MODE)
    if source is None:
        found = f"no token was found (checked {TOKEN}, {TOKEN_PATH} and {home / '.ray' / 'auth_token'})"
    else:
        found = f"the token from {source} was refused (RAY_AUTH_MODE={mode or 'unset'})"
    return (f"the Ray cluster at {address} (cluster.address) requires token authentication and {found}. "
            f"Copy the head node's ~/.ray/auth_token (`ray get-auth-token` prints it) to "
            f"~/.ray/auth_token on this machine, or set {TOKEN}=<token> or {TOKEN_PATH}=<file>, "
            f"and set {AUTH_MODE}=token if you set {AUTH_MODE} yourself.")
