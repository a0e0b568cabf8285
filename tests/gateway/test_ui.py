"""The dashboard's files as the gateway serves them (offline, self-contained, guarded by a
content security policy), and `POST /admin/replay/report`, which draws a replay document
with the HTML report's code. The page itself is tested in a browser in
`tests/test_dashboard.py`."""

from __future__ import annotations

import copy
import hashlib
import re
from importlib import resources
from typing import Any

import pytest
from starlette.testclient import TestClient

from gateway.replay.html import page
from tests.gateway.conftest import ADMIN

STATIC = resources.files("gateway.ui") / "static"
VENDORED = {  # as recorded in gateway/ui/static/vendor/README.md
    "uPlot.iife.min.js": "19c8d4c6ad88929a79f4ae49d6f7161566dfd0ba3d15cc495e974f787eb78f1f",
    "uPlot.min.css": "df630c6a8d6f8eeaff264b50f73ce5b114f646ffd9a0bb74f049b0a00135fa04",
}


def _files() -> dict[str, str]:
    """Every text file of the page, by its path under static/."""
    found: dict[str, str] = {}

    def walk(directory: Any, prefix: str) -> None:
        for item in directory.iterdir():
            if item.is_dir():
                walk(item, f"{prefix}{item.name}/")
            elif item.name.endswith((".html", ".js", ".css")):
                found[prefix + item.name] = item.read_text(encoding="utf-8")

    walk(STATIC, "")
    return found


def test_the_page_is_served_without_a_token_and_guarded(fast_client: TestClient) -> None:
    moved = fast_client.get("/admin/ui", follow_redirects=False)
    assert moved.status_code in (301, 307) and moved.headers["location"].endswith("/admin/ui/")
    index = fast_client.get("/admin/ui/")
    assert index.status_code == 200 and index.headers["content-type"].startswith("text/html")
    policy = dict(
        part.strip().split(" ", 1) for part in index.headers["content-security-policy"].split(";")
    )
    assert policy == {
        "default-src": "'self'",
        "script-src": "'self'",
        "style-src": "'self' 'unsafe-inline'",
        "img-src": "'self' data:",
        "connect-src": "'self'",
        "frame-src": "'self'",
        "frame-ancestors": "'none'",
        "base-uri": "'none'",
        "form-action": "'none'",
    }
    assert index.headers["x-content-type-options"] == "nosniff"
    assert index.headers["referrer-policy"] == "no-referrer"
    # The page holds no data: without a token it shows only the log-in form.
    assert 'id="login"' in index.text
    assert fast_client.get("/admin/ui/nothing-here.js").status_code == 404


def test_every_file_the_page_loads_is_served_and_nothing_comes_from_the_network(
    fast_client: TestClient,
) -> None:
    files = _files()
    assert {"index.html", "app.js", "api.js", "charts.js", "views/overview.js"} <= set(files)
    referenced = set()
    for path, text in files.items():
        assert not re.search(r"(?:src|href|import[^\"']*from)\s*=?\s*[\"']https?://", text), path
        assert "//cdn" not in text and "@import" not in text, path
        folder = path.rpartition("/")[0]
        for link in re.findall(r"""(?:src|href)="([^"#:]+)"|from "(\.[^"]+)\"""", text):
            target = link[0] or link[1]
            parts = [*folder.split("/"), *target.split("/")] if folder else target.split("/")
            resolved: list[str] = []
            for part in parts:
                if part == "..":
                    resolved.pop()
                elif part not in ("", "."):
                    resolved.append(part)
            referenced.add("/".join(resolved))
    assert "vendor/uPlot.iife.min.js" in referenced and "views/replay.js" in referenced
    for path in referenced:
        response = fast_client.get(f"/admin/ui/{path}")
        assert response.status_code == 200, path


def test_the_token_goes_in_a_header_and_session_storage_only() -> None:
    api = _files()["api.js"]
    assert "sessionStorage" in api and "authorization: `Bearer" in api
    assert "localStorage" not in "".join(_files().values())  # kept past the tab


def test_the_vendored_chart_library_is_the_published_one() -> None:
    vendor = STATIC / "vendor"
    for name, digest in VENDORED.items():
        assert hashlib.sha256(vendor.joinpath(name).read_bytes()).hexdigest() == digest, name
        assert digest in vendor.joinpath("README.md").read_text()
    assert "MIT License" in vendor.joinpath("uPlot.LICENSE").read_text()


def _document() -> dict[str, Any]:
    """A replay document with what the report draws, and a field it does not."""
    return {
        "schema": "gateway.replay/1",
        "workload": {"name": "<script>alert(1)</script>", "requests": 4},
        "requests": 4,
        "hit_rate": 0.5,
        "cost_saved_usd": 0.002,
        "cost_without_cache_usd": 0.004,
        "tokens_saved": 120,
        "false_hits": 0,
        "precision": 1.0,
        "recall": None,
        "latency_ms": {"gateway_added": {"p50": 3.1, "p95": 9.0}, "upstream": {"p50": 410.0}},
        "cache_size": 2,
        "series": {
            "cumulative_saved_usd": [0.0, 0.0, 0.001, 0.002],
            "hit_similarity": [1.0, 0.97],
            "miss_nearest": [0.41],
            "threshold": 0.93,
        },
        "by_category": {
            'code"><b>': {"hit_rate": 0.5, "bypass_reasons": {"temperature_above_limit": 1}},
            "default": {"hit_rate": 0.5},
        },
        "threshold_sweep": [
            {"threshold": 0.9, "false_hits": 1, "cost_saved_usd": 0.003},
            {"threshold": 0.95, "false_hits": 0, "cost_saved_usd": 0.002},
        ],
    }


def test_a_replay_document_is_drawn_by_the_reports_own_code(fast_client: TestClient) -> None:
    document = _document()
    assert fast_client.post("/admin/replay/report", json=document).status_code == 401
    response = fast_client.post("/admin/replay/report", json=document, headers=ADMIN)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/html")
    assert "sandbox" in response.headers["content-security-policy"]
    # Exactly what `gateway replay --html` writes for the same figures.
    expected = copy.deepcopy(document)
    del expected["schema"], expected["workload"]["requests"]
    expected["latency_ms"]["gateway_added"] = {"p50": 3.1}
    expected["by_category"]["default"]["bypass_reasons"] = {}
    assert response.text == page(expected)
    for chart in ("chart-savings", "chart-categories", "chart-similarity", "chart-sweep"):
        assert f'id="{chart}"' in response.text
    # Text from the document is escaped, never markup.
    assert "<script>alert" not in response.text and "<b>" not in response.text
    assert "&lt;script&gt;" in response.text


@pytest.mark.parametrize(
    ("change", "where"),
    [
        (lambda d: d.update(requests="many"), "requests"),
        (lambda d: d.update(requests=True), "requests"),
        (lambda d: d.update(hit_rate=1.5), "hit_rate"),
        (lambda d: d.pop("series"), "series"),
        (lambda d: d["series"].update(threshold="0.9"), "series.threshold"),
        (
            lambda d: d["series"]["cumulative_saved_usd"].append("x"),
            "series.cumulative_saved_usd.4",
        ),
        (
            lambda d: d["by_category"]["default"].update(hit_rate=None),
            "by_category.default.hit_rate",
        ),
        (lambda d: d["threshold_sweep"][0].update(threshold=7), "threshold_sweep.0.threshold"),
        (lambda d: d["workload"].update(name=["x"]), "workload.name"),
    ],
)
def test_what_is_not_a_replay_document_is_a_400_naming_the_field(
    fast_client: TestClient, change: Any, where: str
) -> None:
    document = _document()
    change(document)
    response = fast_client.post("/admin/replay/report", json=document, headers=ADMIN)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["param"] == where
    assert error["message"].startswith("not a gateway replay --json document")


def test_a_long_replays_document_is_not_refused_for_its_size(fast_client: TestClient) -> None:
    document = _document()
    document["series"]["cumulative_saved_usd"] = [0.001 * i for i in range(200_000)]
    response = fast_client.post("/admin/replay/report", json=document, headers=ADMIN)
    assert response.status_code == 200  # larger than server.max_body_bytes (1 MiB)
    assert 'id="chart-savings"' in response.text and "199.999" in response.text
    assert (
        fast_client.post("/admin/replay/report", content=b"[1,", headers=ADMIN).status_code == 400
    )
