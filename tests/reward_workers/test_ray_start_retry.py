"""``ensure_ray`` retries Ray's own local start-up timeout (its raylet gets a fixed 30 s to register, too little on a
loaded machine) and nothing else; each retry says so on stderr."""

from __future__ import annotations

import types

import pytest

from vlmrl.reward_workers import pool

CFG = types.SimpleNamespace(namespace="t", ray_address=None)
TIMEOUT = Exception("The current node timed out during startup. This could happen because ...")


@pytest.fixture
def fake_ray(monkeypatch):
    calls = {"init": 0, "cleanup": 0}
    outcomes = []

    def init(**kwargs):
        calls["init"] += 1
        outcome = outcomes.pop(0)
        if outcome is not None:
            raise outcome

    monkeypatch.setattr(pool.ray, "is_initialized", lambda: False)
    monkeypatch.setattr(pool.ray, "init", init)
    monkeypatch.setattr(pool.ray, "shutdown", lambda: None)
    monkeypatch.setattr(pool, "_stop_partial_ray_start", lambda: calls.__setitem__("cleanup", calls["cleanup"] + 1))
    monkeypatch.setattr(pool, "prepare_ray_auth", lambda address: None)
    return calls, outcomes


def test_a_start_up_timeout_is_retried_and_said(fake_ray, capsys):
    calls, outcomes = fake_ray
    outcomes += [TIMEOUT, TIMEOUT, None]
    pool.ensure_ray(CFG)
    assert calls == {"init": 3, "cleanup": 2}
    err = capsys.readouterr().err
    assert "attempt 2 of 3" in err and "attempt 3 of 3" in err


def test_the_last_timeout_is_raised(fake_ray):
    calls, outcomes = fake_ray
    outcomes += [TIMEOUT] * pool.RAY_START_ATTEMPTS
    with pytest.raises(Exception, match="timed out during startup"):
        pool.ensure_ray(CFG)
    assert calls["init"] == pool.RAY_START_ATTEMPTS


def test_other_errors_are_not_retried(fake_ray):
    calls, outcomes = fake_ray
    outcomes += [ConnectionError("no cluster at that address"), None]
    with pytest.raises(ConnectionError):
        pool.ensure_ray(CFG)
    assert calls == {"init": 1, "cleanup": 0}
