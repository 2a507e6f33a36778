"""The soak benchmark end to end (short): it runs all its clients against a real server and reports sane numbers."""

from __future__ import annotations

import json

import pytest


@pytest.mark.slow
def test_service_soak_short_run(tmp_path):
    from benchmarks import service_soak

    out = tmp_path / "soak.json"
    assert service_soak.main(["--seconds", "2", "--json", str(out), "--results-dir", str(tmp_path)]) == 0
    res = json.loads(out.read_text())
    assert res["solo"]["n"] >= 5 and res["soak"]["normal"]["n"] >= 5
    assert res["soak"]["normal"]["resource_exhausted"] == 0 and res["soak"]["normal"]["stream_errors"] == 0
    assert res["soak"]["flood"]["answered"] == res["soak"]["flood"]["sent"] > 0
    assert res["soak"]["never_read"]["answered"] == 0 and res["soak"]["never_read"]["sent"] > 0
    assert 0 < res["server_peak_rss_mb"]["value"] < 2048
    recorded = json.loads((tmp_path / "service_soak.json").read_text())
    assert recorded["values"]["normal_resource_exhausted"]["value"] == 0
