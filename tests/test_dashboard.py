"""The admin dashboard in a real browser: a `gateway serve` process with traffic from the
fake upstream, `/admin/ui/` opened in headless Chromium (Debian's package, driven by
Playwright). Each view is checked against the admin API and the serving path, and saved as
a screenshot (see `tests.support.browser.screenshots_dir`)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page, Route, expect

from gateway.cli import main
from tests.support.browser import chromium, screenshots_dir
from tests.support.fake_upstream import FakeUpstream, answer_for, serve_fake_upstream
from tests.support.gateway_process import gateway_env, gateway_process, write_config

TOKEN = "dashboard-admin-token"
ADMIN = {"authorization": f"Bearer {TOKEN}"}
BASIL = "How do I keep basil fresh for longer?"
WATER = "At what temperature does water boil at sea level?"
CODE = "Write a Python function that reverses a string"
CAPITAL = "What is the capital city of Australia?"
FILLERS = 28  # one entry in each of 28 tenants: more than a page of 25


@dataclass
class Dashboard:
    base: str  # http://127.0.0.1:PORT
    shots: Path

    def ask(
        self, text: str, *, key: str = "sk-team", category: str | None = None
    ) -> httpx.Response:
        headers = {"authorization": f"Bearer {key}"}
        if category:
            headers["x-cache-category"] = category
        body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": text}]}
        response = httpx.post(
            f"{self.base}/v1/chat/completions", json=body, headers=headers, timeout=30
        )
        assert response.status_code == 200, response.text
        return response

    def admin(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        return httpx.request(method, f"{self.base}{path}", headers=ADMIN, timeout=30, **kwargs)

    def shoot(self, page: Page, name: str) -> None:
        page.screenshot(path=str(self.shots / f"{name}.png"), full_page=True)


@pytest.fixture(scope="module")
def dashboard(tmp_path_factory: pytest.TempPathFactory, model_cache: Path) -> Iterator[Dashboard]:
    tmp = tmp_path_factory.mktemp("dashboard")
    with serve_fake_upstream() as upstream:
        config = write_config(
            tmp / "gateway", upstream_base_url=upstream.base_url, model_cache=model_cache
        )
        env = {**gateway_env(), "GATEWAY_ADMIN_TOKEN": TOKEN}
        with gateway_process(config, env) as (_, v1):
            board = Dashboard(v1.removesuffix("/v1"), screenshots_dir(tmp / "screenshots"))
            _traffic(board, upstream)
            yield board


def _traffic(board: Dashboard, upstream: FakeUpstream) -> None:
    """Misses, exact repeats, a paraphrase, a code prompt, fillers in tenants of their own,
    and one hit judged wrong: every figure of the overview is non-zero."""
    for text in (BASIL, WATER, CODE, CAPITAL, BASIL, WATER, CAPITAL,
                 "how can I keep basil fresh longer"):  # fmt: skip
        board.ask(text)
    for i in range(FILLERS):
        board.ask(f"Filler question {i}", key=f"sk-filler-{i}")
    served = board.ask(WATER)
    assert served.headers["x-cache"] == "hit"
    verdict = board.admin(
        "POST", "/admin/feedback", json={"verdict": "wrong", "response_id": served.json()["id"]}
    )
    assert verdict.status_code == 201, verdict.text
    assert len(upstream.calls) >= 3 + FILLERS


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as opened:
        yield opened


@pytest.fixture
def page(browser: Browser, dashboard: Dashboard) -> Iterator[Page]:
    """A fresh tab; afterwards: no script error, and every request went to the gateway, the
    token in no URL and no cookie, and every admin API call with a bearer header."""
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    opened = context.new_page()
    errors: list[str] = []
    sent: list[tuple[str, str | None]] = []
    opened.on("pageerror", lambda error: errors.append(str(error)))
    opened.on("request", lambda r: sent.append((r.url, r.headers.get("authorization"))))
    yield opened
    cookies = context.cookies()
    context.close()
    assert not errors, f"script errors in the page: {errors}"
    assert sent and not cookies
    for url, authorization in sent:
        assert url.startswith(f"{dashboard.base}/") or url.startswith("data:"), url
        assert TOKEN not in url
        api = url.startswith(f"{dashboard.base}/admin/") and "/admin/ui" not in url
        assert not api or (authorization or "").startswith("Bearer "), url


def _log_in(page: Page, board: Dashboard, view: str = "overview") -> None:
    page.goto(f"{board.base}/admin/ui/#{view}")
    page.fill("#token", TOKEN)
    page.click("#login button[type=submit]")
    expect(page.locator("#view-title")).to_be_visible()


def _ask_category(board: Dashboard, text: str) -> httpx.Response:
    return board.ask(text, category="default")


def test_a_wrong_token_shows_the_apis_error_and_the_right_one_logs_in(
    page: Page, dashboard: Dashboard
) -> None:
    page.goto(f"{dashboard.base}/admin/ui")  # redirected to /admin/ui/
    expect(page.locator("#login")).to_be_visible()
    page.fill("#token", "not-the-token")
    page.click("#login button[type=submit]")
    refused = httpx.get(f"{dashboard.base}/admin/stats", headers={"authorization": "Bearer x"})
    assert refused.status_code == 401
    expect(page.locator("#login-error")).to_have_text(refused.json()["error"]["message"])
    assert page.evaluate("sessionStorage.length") == 0  # a refused token is not kept
    page.fill("#token", TOKEN)
    page.click("#login button[type=submit]")
    expect(page.locator("#view-title")).to_have_text("Overview")
    expect(page.locator("#login")).to_be_hidden()
    # Kept for this tab only, and never in the address.
    assert page.evaluate("sessionStorage.getItem('gateway-admin-token')") == TOKEN
    assert TOKEN not in page.url


def test_the_overview_shows_what_admin_stats_says(page: Page, dashboard: Dashboard) -> None:
    _log_in(page, dashboard)
    expect(page.locator("[data-stat=requests]")).to_be_visible()
    totals = dashboard.admin("GET", "/admin/stats").json()["totals"]
    shown = {
        key: page.get_attribute(f"[data-stat={key}]", "data-value")
        for key in ("requests", "hit_rate", "tokens_saved", "cost_saved_usd", "false_hits",
                    "added_p50", "added_p95")
    }  # fmt: skip
    expected = {
        "requests": totals["requests"],
        "hit_rate": totals["hit_rate"],
        "tokens_saved": totals["tokens_saved"],
        "cost_saved_usd": totals["cost_saved_usd"],
        "false_hits": totals["false_hits"],
        "added_p50": totals["added_latency_ms"]["p50"],
        "added_p95": totals["added_latency_ms"]["p95"],
    }
    assert {k: float(v or "nan") for k, v in shown.items()} == pytest.approx(expected)
    assert totals["requests"] == 9 + FILLERS and totals["false_hits"] == 1
    assert totals["cost_saved_usd"] > 0 and totals["tokens_saved"] > 0
    expect(page.locator("[data-stat=requests]")).to_have_text(f"{totals['requests']:,}")
    expect(page.locator("[data-stat=hit_rate]")).to_have_text(f"{100 * totals['hit_rate']:.1f} %")
    expect(page.locator("[data-stat=tokens_saved]")).to_have_text(
        f"{totals['tokens_saved']:,} tokens"
    )
    # A chart per figure over time, drawn; the breakdown by category, then by tenant.
    expect(page.locator(".chart-figure canvas")).to_have_count(6)
    categories = dashboard.admin("GET", "/admin/stats").json()["by_category"]
    rows = page.locator(".scroll table tbody tr")  # the breakdown's (uPlot's legends are tables)
    expect(rows).to_have_count(len(categories))
    page.select_option("#breakdown", "by_tenant")
    # 29 tenants: 20 a page, the busiest first.
    tenants = dashboard.admin("GET", "/admin/stats").json()["by_tenant"]
    busiest = max(tenants, key=lambda t: tenants[t]["requests"])
    assert len(tenants) == 1 + FILLERS
    expect(page.locator(".scroll caption")).to_have_text(f"By tenant ({len(tenants)}, page 1 of 2)")
    expect(rows).to_have_count(20)
    expect(rows.first).to_contain_text(busiest)
    page.click(".paged [data-pager=next]")
    expect(rows).to_have_count(len(tenants) - 20)
    page.click(".paged [data-pager=previous]")
    expect(rows).to_have_count(20)
    dashboard.shoot(page, "overview")
    # A phone's width: nothing wider than the screen (tables scroll in their own box).
    page.set_viewport_size({"width": 390, "height": 844})
    # uPlot resizes on the next frame: until nothing is wider than the screen
    page.wait_for_function("document.documentElement.scrollWidth <= 390", timeout=5000)
    dashboard.shoot(page, "overview-phone")


def test_keyboard_alone_moves_between_views(page: Page, dashboard: Dashboard) -> None:
    _log_in(page, dashboard)
    page.focus("a.skip")  # the first stop of the page
    for _ in range(10):  # then the views in order
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.getAttribute('href')") == "#policies":
            break
    else:
        pytest.fail("Tab never reached the Policies link")
    page.keyboard.press("Enter")
    expect(page.locator("#view-title")).to_have_text("Policies")
    expect(page.locator("#view-title")).to_be_focused()  # the new view's heading


def test_a_progress_indicator_shows_while_data_loads(page: Page, dashboard: Dashboard) -> None:
    seen: list[bool] = []

    def slow(route: Route) -> None:
        seen.append(page.evaluate("!document.getElementById('progress').hidden"))
        route.continue_()

    page.route(re.compile(r".*/admin/upstreams$"), slow)
    _log_in(page, dashboard, "upstreams")
    assert seen and all(seen)  # shown while each call was on its way
    expect(page.locator("#progress")).to_be_hidden()


def test_a_threshold_edited_in_the_page_is_the_next_requests_threshold(
    page: Page, dashboard: Dashboard
) -> None:
    before = _ask_category(dashboard, "What colour is a ripe mango?").headers["x-cache-threshold"]
    assert float(before) != 0.97
    _log_in(page, dashboard, "policies")
    field = page.locator("#default-threshold")
    # A value the API refuses: its message beside the field, and nothing changes.
    field.fill("2")
    page.click("#policy-default button[type=submit]")
    expect(page.locator("#default-threshold-error")).to_contain_text("threshold must be a cosine")
    expect(field).to_have_attribute("aria-invalid", "true")
    dashboard.shoot(page, "policies-error")
    assert (
        _ask_category(dashboard, "What colour is a ripe plum?").headers["x-cache-threshold"]
        == before
    )
    field.fill("0.97")
    page.click("#policy-default button[type=submit]")
    expect(page.locator("#policy-default [role=status]")).to_contain_text("Saved default")
    after = _ask_category(dashboard, "What colour is a ripe papaya?")
    assert after.headers["x-cache-threshold"] == "0.9700"
    # The page shows the value in force at each model's load.
    expect(page.locator("#policy-default .effective-threshold").first).to_have_text("0.9700")
    expect(page.locator("#policy-default .badge")).to_have_text("changed")
    dashboard.shoot(page, "policies")
    # Back to the policy file, from the page.
    page.click("#policy-default >> text=Back to the policy file")
    expect(page.locator("#policy-default .badge")).to_have_count(0)
    assert (
        _ask_category(dashboard, "What colour is a ripe kiwi?").headers["x-cache-threshold"]
        == before
    )


def test_entries_search_open_delete_mark_wrong_and_purge(page: Page, dashboard: Dashboard) -> None:
    assert dashboard.ask(BASIL).headers["x-cache"] == "hit"
    _log_in(page, dashboard, "entries")
    # Paging through every entry, 25 at a time.
    rows = page.locator("table tbody tr")
    expect(rows).to_have_count(25)
    total = len(dashboard.admin("GET", "/admin/entries", params={"limit": 500}).json()["data"])
    assert 25 < total <= 50
    page.dblclick("#next-page")  # a second click while the page loads: still page 2
    expect(page.locator(".pager span")).to_have_text("Page 2")
    expect(rows).to_have_count(total - 25)
    page.click("#previous-page")
    expect(page.locator(".pager span")).to_have_text("Page 1")
    # Search by meaning: the basil entry comes first.
    page.fill("#filter-q", "keeping basil fresh")
    page.click("#search")
    expect(rows.first).to_contain_text(BASIL)
    rows.first.locator("button.link").click()
    expect(page.locator("#entry .prompt")).to_have_text(f"user: {BASIL}")
    expect(page.locator("#entry .answer")).to_have_text(answer_for(BASIL))
    dashboard.shoot(page, "entries")
    entry_id = int(page.inner_text("#entry-title").removeprefix("Entry "))
    # Delete, confirmed in a dialog: gone from the store, the list and the serving path.
    page.click("#delete-entry")
    dialog = page.locator("dialog.confirm")
    expect(dialog).to_be_visible()
    dashboard.shoot(page, "entries-delete")
    dialog.locator("button[value=confirm]").click()
    expect(page.locator("#alert")).to_have_text(f"Entry {entry_id} deleted.")
    expect(page.locator("table tbody")).not_to_contain_text(BASIL)
    assert dashboard.admin("GET", f"/admin/entries/{entry_id}").status_code == 404
    assert dashboard.ask(BASIL).headers["x-cache"] == "miss"
    # Mark a served hit wrong: the entry is demoted (no paraphrase is served it again).
    page.fill("#filter-q", "Australia's capital city")
    page.click("#search")
    expect(rows.first).to_contain_text(CAPITAL)
    rows.first.locator("button.link").click()
    capital_id = int(page.inner_text("#entry-title").removeprefix("Entry "))
    page.fill("#feedback-note", "the answer is about something else")
    page.click("#mark-wrong")
    expect(page.locator("#alert")).to_have_text(
        f"Entry {capital_id} marked wrong: no paraphrase is served it again."
    )
    expect(page.locator("#entry")).to_contain_text("Demoted (marked wrong)yes")
    assert dashboard.admin("GET", f"/admin/entries/{capital_id}").json()["demoted"] is True
    # Purge one category, confirmed; a cancelled purge removes nothing.
    code = len(dashboard.admin("GET", "/admin/entries", params={"category": "code"}).json()["data"])
    assert code >= 1
    page.fill("#filter-q", "")
    page.select_option("#filter-category", "code")
    page.click("#search")
    expect(rows).to_have_count(code)
    page.click("#purge")
    expect(dialog).to_contain_text("category = code")
    dialog.locator("button[value=cancel]").click()
    expect(rows).to_have_count(code)
    page.click("#purge")
    dialog.locator("button[value=confirm]").click()
    expect(page.locator("#alert")).to_have_text(f"Purged {code} entries.")
    expect(page.locator(".empty")).to_have_text("No entries match.")
    assert (
        dashboard.admin("GET", "/admin/entries", params={"category": "code"}).json()["data"] == []
    )


def test_upstreams_show_each_models_load_and_traffic(page: Page, dashboard: Dashboard) -> None:
    _log_in(page, dashboard, "upstreams")
    day = dashboard.admin("GET", "/admin/stats").json()["by_model"]["gpt-4o-mini"]
    (now,) = dashboard.admin("GET", "/admin/upstreams").json()["data"]
    cells = page.locator("tr", has_text="gpt-4o-mini").locator("td")
    expect(cells.nth(2)).to_have_text(f"{100 * now['load']:.1f} %")
    expect(cells.nth(3)).to_have_text(f"{now['inflight']} requests")
    expect(cells.nth(4)).to_have_text(re.compile(r"^\d+(\.\d)? ms$"))  # answered: a latency
    expect(cells.nth(6)).to_have_text(f"{day['requests']:,}")
    expect(cells.nth(7)).to_have_text(f"{day['errors']:,}")
    expect(cells.nth(8)).to_have_text(f"{100 * day['hit_rate']:.1f} %")
    dashboard.shoot(page, "upstreams")


class _Charts(HTMLParser):
    """What a report's charts draw: the savings line, the category bars, the sweep's dots."""

    def __init__(self) -> None:
        super().__init__()
        self.drawn: list[tuple[str, str]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if name in ("points", "data-value", "data-threshold", "data-count"):
                self.drawn.append((name, value or ""))


def test_replay_opens_a_json_file_and_draws_the_html_reports_charts(
    page: Page, dashboard: Dashboard, tmp_path: Path, model_cache: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    monkeypatch.setenv("GATEWAY_EMBEDDING_CACHE_DIR", str(model_cache))
    document, report = tmp_path / "replay.json", tmp_path / "replay.html"
    assert main(["replay", "multiturn", "--limit", "60", "--threshold-sweep", "--json",
                 str(document), "--html", str(report)]) == 0  # fmt: skip
    _log_in(page, dashboard, "replay")
    # Not a replay document: the API's message.
    wrong = tmp_path / "wrong.json"
    wrong.write_text('{"requests": "many"}')
    page.set_input_files("#replay-file", str(wrong))
    expect(page.locator(".report-area .error")).to_contain_text(
        "not a gateway replay --json document"
    )
    page.set_input_files("#replay-file", str(document))
    frame = page.frame_locator("iframe.report")
    expect(frame.locator("#chart-sweep")).to_be_visible()
    dashboard.shoot(page, "replay")
    # The same drawing as `gateway replay --html`, point for point.
    expected = _Charts()
    expected.feed(report.read_text())
    shown = _Charts()
    shown.feed(frame.locator("body").evaluate("body => body.innerHTML"))
    assert shown.drawn == expected.drawn and len(expected.drawn) > 20
    # The report runs no script: the frame is sandboxed.
    assert page.get_attribute("iframe.report", "sandbox") == ""
