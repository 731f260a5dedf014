"""Bounds on starting a gang: derived from the gang size and what is shipped, or set (pure, no Ray)."""

from __future__ import annotations

import pytest

from orchestrator import config as C
from orchestrator.config import ConfigError
from orchestrator.driver.cluster import runtime_env
from orchestrator.policy.plan import ElasticPolicy, GangRequest
from orchestrator.policy.start_bounds import (FILES, NOTHING, PIP, actor_start_s, placement_s, rendezvous_s,
                                              shipping, start_bounds)
from tests.helpers import compose

LONG_COLLECTIVE_S = 10_000.0   # far above every derived bound: nothing capped


@pytest.mark.parametrize("world_size,ships,placement,actor_start,rendezvous", [
    (1, NOTHING, 30.1, 121.0, 120.5),
    (2, NOTHING, 30.2, 122.0, 121.0),      # a small gang waits what it waited before (30 s / 120 s / 120 s)
    (16, NOTHING, 31.6, 136.0, 128.0),
    (256, NOTHING, 55.6, 376.0, 248.0),
    (16, FILES, 31.6, 196.0, 128.0),       # files shipped to each node first
    (16, PIP, 31.6, 736.0, 128.0),         # a pip install on each node: Ray's own 600 s setup bound
    (256, PIP, 55.6, 976.0, 248.0),
])
def test_derived_bounds(world_size, ships, placement, actor_start, rendezvous):
    assert placement_s(world_size) == pytest.approx(placement)
    assert actor_start_s(world_size, ships) == pytest.approx(actor_start)
    assert rendezvous_s(world_size) == pytest.approx(rendezvous)


def test_derived_bounds_grow_with_the_gang_and_with_what_is_shipped():
    sizes = [1, 2, 4, 8, 16, 32, 64, 128, 256]
    for derive in (placement_s, rendezvous_s, lambda n: actor_start_s(n, NOTHING)):
        values = [derive(n) for n in sizes]
        assert values == sorted(values) and values[0] < values[-1]
    assert actor_start_s(8, NOTHING) < actor_start_s(8, FILES) < actor_start_s(8, PIP)


def cluster(tmp_path, **fields) -> C.ClusterConfig:
    if fields.pop("with_working_dir", False):
        fields["working_dir"] = str(tmp_path)
    return C.ClusterConfig(**fields)


@pytest.mark.parametrize("fields,expected", [
    ({}, NOTHING),                                                        # a local Ray runs our own files
    ({"pip": ["einops"]}, NOTHING),                                       # runtime_env only when joining
    ({"address": "auto"}, FILES),                                         # our packages go to the nodes
    ({"address": "auto", "ship_code": False}, NOTHING),
    ({"address": "auto", "ship_code": False, "with_working_dir": True}, FILES),
    ({"address": "auto", "ship_code": False, "py_modules": ["s3://b/m.zip"]}, FILES),
    ({"address": "auto", "pip": ["einops"]}, PIP),
    ({"address": "auto", "ship_code": False, "pip": ["einops"]}, PIP),
])
def test_shipping_says_what_the_runtime_env_brings_to_a_node(tmp_path, fields, expected):
    cfg = cluster(tmp_path, **fields)
    assert shipping(cfg) == expected
    env = runtime_env(cfg) or {}
    assert (expected != NOTHING) == bool(env)    # the same decision as the one Ray is given
    assert (expected == PIP) == ("pip" in env)


def test_null_keys_are_derived_and_say_so():
    bounds = start_bounds(C.ScalingConfig(), C.ClusterConfig(), 16, LONG_COLLECTIVE_S)
    assert bounds.placement.seconds == pytest.approx(31.6)
    assert bounds.actor_start.seconds == pytest.approx(136.0)
    assert bounds.rendezvous.seconds == pytest.approx(128.0)
    text = bounds.actor_start.describe()
    assert "136s" in text and "derived from 16 workers, shipping nothing" in text
    assert "raise scaling.actor_start_timeout_s" in text


def test_set_keys_win_over_the_derivation():
    scaling = C.ScalingConfig(placement_timeout_s=5, actor_start_timeout_s=7, rendezvous_timeout_s=9)
    bounds = start_bounds(scaling, C.ClusterConfig(address="auto", pip=["einops"]), 256, LONG_COLLECTIVE_S)
    assert [b.seconds for b in (bounds.placement, bounds.actor_start, bounds.rendezvous)] == [5, 7, 9]
    assert bounds.rendezvous.describe() == "9s (raise scaling.rendezvous_timeout_s to wait longer)"


@pytest.mark.parametrize("rendezvous_timeout_s", [None, 500.0])
def test_the_rendezvous_waits_no_longer_than_torchs_own_join_timeout(rendezvous_timeout_s):
    scaling = C.ScalingConfig(rendezvous_timeout_s=rendezvous_timeout_s)
    bound = start_bounds(scaling, C.ClusterConfig(), 2, 60.0).rendezvous
    assert bound.seconds == 60.0 and "raise failure.collective_timeout_s" in bound.describe()


@pytest.mark.parametrize("key", ["placement_timeout_s", "actor_start_timeout_s", "rendezvous_timeout_s"])
@pytest.mark.parametrize("value", [0, -1.5])
def test_a_bound_must_be_positive_or_null(key, value):
    with pytest.raises(ConfigError, match=rf"scaling\.{key} must be > 0 or null"):
        C.ScalingConfig(**{key: value})


def test_bounds_compose_from_the_command_line_and_are_null_by_default():
    assert compose().scaling.actor_start_timeout_s is None
    cfg = compose("scaling.actor_start_timeout_s=300", "scaling.rendezvous_timeout_s=45")
    assert (cfg.scaling.actor_start_timeout_s, cfg.scaling.rendezvous_timeout_s) == (300.0, 45.0)
    with pytest.raises(ConfigError, match=r"scaling\.rendezvous_timeout_s must be > 0"):
        compose("scaling.rendezvous_timeout_s=0")


def test_the_old_cluster_placement_key_still_sets_the_bound():
    with pytest.warns(FutureWarning, match="cluster.placement_timeout_s is deprecated"):
        cfg = compose("cluster.placement_timeout_s=12")
    assert cfg.scaling.placement_timeout_s == 12.0 and cfg.cluster.placement_timeout_s is None


def elastic(num_workers=4, min_workers=2, placement_timeout_s=None, restart_wait_s=5.0) -> ElasticPolicy:
    return ElasticPolicy(num_workers, min_workers, 1, "keep_global_batch", restart_wait_s, placement_timeout_s)


def test_a_null_placement_bound_is_derived_for_each_gang_size():
    first = elastic().gang_requests(0)
    assert first == [GangRequest(4, placement_s(4))]
    assert first[0].placement_bound().describe() == f"{placement_s(4):g}s (derived from 4 workers; " \
                                                    "raise scaling.placement_timeout_s to wait longer)"
    after_failure = elastic().gang_requests(1)
    assert after_failure == [GangRequest(4, 5.0), GangRequest(3, placement_s(3)), GangRequest(2, placement_s(2))]
    assert after_failure[0].placement_key == "failure.restart_wait_s"  # the key that set that wait


def test_a_set_placement_bound_is_used_for_every_size():
    requests = elastic(placement_timeout_s=7.0).gang_requests(1)
    assert [r.placement_timeout_s for r in requests] == [5.0, 7.0, 7.0]
    assert requests[1].placement_bound().describe() == "7s (raise scaling.placement_timeout_s to wait longer)"
