"""Recommendations over HTTP: Feast's own feature server (`tvrec features serve`, which runs
`feast serve` on the repo with the work directory set) answers `user_recommendations` and the
feature views with what `tvrec query` and `tvrec features get` read."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from engines import free_port
from typer.testing import CliRunner

from tvrec.jobs.cli import app
from tvrec.pipelines.workdir import Workdir

runner = CliRunner()


@pytest.fixture(scope="module")
def feature_server(
    served_workdir: Workdir, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    port = free_port()
    log = (tmp_path_factory.mktemp("feast-serve") / "serve.log").open("wb")
    tvrec = Path(sys.executable).with_name("tvrec")
    args = [str(tvrec), "features", "serve", "--port", str(port), "-w", str(served_workdir.root)]
    proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120  # Feast imports its whole stack first
        while not _healthy(url):
            assert proc.poll() is None, f"feast serve exited: see {log.name}"
            assert time.monotonic() < deadline, f"feast serve did not come up: see {log.name}"
            time.sleep(0.25)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=1) as resp:
            return resp.status == 200
    except (urllib.error.URLError, OSError):
        return False


def _post(url: str, features: list[str], entities: dict[str, list[str]]) -> dict[str, list]:
    """/get-online-features, as {feature name: values per entity row}."""
    body = json.dumps({"features": features, "entities": entities}).encode()
    request = urllib.request.Request(
        f"{url}/get-online-features", body, {"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=30) as resp:
        answer = json.loads(resp.read())
    names = answer["metadata"]["feature_names"]
    return {n: r["values"] for n, r in zip(names, answer["results"], strict=True)}


def _cli_json(*args: str) -> dict:
    res = runner.invoke(app, [*args, "--json"])
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout)


def test_recommendations_over_http_match_tvrec_query(
    feature_server: str, served_workdir: Workdir
) -> None:
    users = ["u0001", "u0002", "u0003"]
    got = _post(
        feature_server,
        ["user_recommendations:show_ids", "user_recommendations:model_version"],
        {"user_id": users},
    )
    for user, show_ids in zip(users, got["show_ids"], strict=True):
        query = _cli_json("query", "--user", user, "-k", "20", "-w", str(served_workdir.root))
        assert show_ids == [r["show_id"] for r in query["results"]]
    assert len(set(got["model_version"])) == 1 and got["model_version"][0]


def test_features_over_http_match_tvrec_features_get(
    feature_server: str, served_workdir: Workdir
) -> None:
    refs = ["user_activity:events_total", "user_activity:events_30d"]
    got = _post(feature_server, refs, {"user_id": ["u0001"]})
    local = _cli_json("features", "get", "--user", "u0001", "-w", str(served_workdir.root))
    assert got["events_total"] == [local["user_activity__events_total"]]
    assert got["events_30d"] == [local["user_activity__events_30d"]]
    shows = _post(feature_server, ["show_popularity:views_total"], {"show_id": ["s0001"]})
    local = _cli_json("features", "get", "--show", "s0001", "-w", str(served_workdir.root))
    assert shows["views_total"] == [local["show_popularity__views_total"]]


def test_serve_needs_an_applied_repo(tmp_path: Path) -> None:
    res = runner.invoke(app, ["features", "serve", "-w", str(tmp_path)])
    assert res.exit_code == 2 and "tvrec run" in res.stderr
