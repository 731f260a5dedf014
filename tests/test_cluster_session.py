"""Joining and starting Ray: token authentication, the loopback switch scoped to the embedded Ray,
and the runtime environment that carries the user's code to a cluster."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from orchestrator.driver import cluster_auth
from orchestrator import config as C
from orchestrator.driver.cluster import runtime_env
from tests.helpers import REPO


@pytest.fixture
def home(tmp_path):
    (tmp_path / "home").mkdir()
    return tmp_path / "home"


def write_token(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("a" * 32)
    return path


def test_token_is_found_in_rays_order(home, tmp_path):
    assert cluster_auth.token_source({}, home) is None
    default = write_token(home / ".ray" / "auth_token")
    assert cluster_auth.token_source({}, home) == str(default)
    assert cluster_auth.token_source({"RAY_AUTH_TOKEN_PATH": str(tmp_path / "missing")}, home) is None
    own = write_token(tmp_path / "token")
    assert cluster_auth.token_source({"RAY_AUTH_TOKEN_PATH": str(own)}, home) == str(own)
    assert cluster_auth.token_source({"RAY_AUTH_TOKEN": "t" * 32, "RAY_AUTH_TOKEN_PATH": str(own)}, home) \
        == "RAY_AUTH_TOKEN"


def test_join_uses_token_mode_when_a_token_is_at_hand(home):
    assert cluster_auth.join_env({}, home) == {}  # nothing to send: Ray's default
    write_token(home / ".ray" / "auth_token")
    assert cluster_auth.join_env({}, home) == {"RAY_AUTH_MODE": "token"}
    assert cluster_auth.join_env({"RAY_AUTH_MODE": "disabled"}, home) == {}  # the user's choice
    assert cluster_auth.join_env({"RAY_AUTH_TOKEN": "t" * 32}, Path("/nonexistent")) == {"RAY_AUTH_MODE": "token"}


def test_local_ray_states_rays_default_mode_so_ray_does_not_warn():
    assert cluster_auth.local_env({}) == {"RAY_AUTH_MODE": "token"}
    assert cluster_auth.local_env({"RAY_AUTH_MODE": "disabled"}) == {}


def test_auth_failure_is_recognised_through_rays_wrapping_and_the_message_says_what_to_do(home):
    from ray.exceptions import AuthenticationError

    try:
        try:
            raise AuthenticationError("RPC error: InvalidAuthToken: Authentication token is missing")
        except AuthenticationError as inner:
            raise ConnectionError("Failed to connect to Ray cluster at 10.0.0.1:6379") from inner
    except ConnectionError as err:
        assert cluster_auth.is_auth_failure(err)
    assert not cluster_auth.is_auth_failure(ConnectionError("Failed to connect to Ray cluster at 10.0.0.1:6379"))
    message = cluster_auth.auth_failure_message("10.0.0.1:6379", {}, home)
    assert "10.0.0.1:6379 (cluster.address)" in message and "no token was found" in message
    assert "~/.ray/auth_token" in message and "RAY_AUTH_TOKEN" in message


LOCAL_THEN_LOOK = textwrap.dedent("""
    import os
    import ray
    from ray._private import ray_constants
    from orchestrator import config as C
    from orchestrator.driver.cluster import RaySession

    @ray.remote
    def node_ip():
        return ray.util.get_node_ip_address()

    with RaySession(C.ClusterConfig(num_cpus=1)):
        print("inside", ray.util.get_node_ip_address(), ray.get(node_ip.remote()))
    print("after", os.environ.get("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"), ray_constants.ENABLE_RAY_CLUSTER)
""")


def test_embedded_ray_is_loopback_only_for_its_own_start_and_prints_no_token_warning(own_ray_env, home):
    """A local run followed by cluster.address=auto in the same process (a notebook) must not keep
    Ray's single-machine switch on; and a default run has no warning the user can do nothing about."""
    env = {k: v for k, v in own_ray_env.items() if k not in ("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "RAY_AUTH_MODE")}
    env["HOME"] = str(home)  # Ray writes ~/.ray/auth_token for a new local cluster: not the user's
    done = subprocess.run([sys.executable, "-c", LOCAL_THEN_LOOK], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "inside 127.0.0.1 127.0.0.1" in done.stdout, "the embedded Ray (driver and workers) is on loopback"
    assert "after None True" in done.stdout, "the switch is gone once ray.init returned"
    assert "Token authentication" not in done.stderr


def test_runtime_env_carries_the_users_code_with_ours(tmp_path):
    package = tmp_path / "user_pkg"
    package.mkdir()
    cfg = C.ClusterConfig(address="auto", working_dir=str(tmp_path), py_modules=[str(package), "s3://b/m.zip"],
                          pip=["tqdm==4.66.0"])
    env = runtime_env(cfg)
    assert env["working_dir"] == str(tmp_path)
    assert env["py_modules"][-2:] == [str(package), "s3://b/m.zip"]
    assert any(p.endswith("orchestrator") for p in env["py_modules"]), "our own package still ships"
    assert env["pip"] == ["tqdm==4.66.0"]
    assert runtime_env(C.ClusterConfig(address=None, working_dir=str(tmp_path))) is None  # local: on disk


@pytest.mark.parametrize("key, value", [("working_dir", "/no/such/dir"), ("py_modules", ["/no/such/pkg"]),
                                        ("pip", [""]), ("gloo_socket_ifname", " ")])
def test_bad_user_code_keys_name_the_key(key, value):
    with pytest.raises(C.ConfigError, match=f"cluster.{key}"):
        C.ClusterConfig(address="auto", **{key: value})


def test_bad_working_dir_exits_2_before_anything_starts(own_ray_env, tmp_path):
    done = subprocess.run([sys.executable, "-m", "orchestrator.train", f"hydra.run.dir={tmp_path / 'run'}",
                           "cluster.address=auto", "cluster.working_dir=/no/such/dir"],
                          cwd=REPO, env=own_ray_env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "cluster.working_dir" in done.stderr and "Traceback" not in done.stderr
