"""The web console at /ui in a real browser: Playwright driving Debian's chromium against the session's
daemon over TCP (Gemma, SmolLM2, the thinker, pulls from the test Hub). Each state is saved as a screenshot
in the test artifacts ($R1_TEST_ARTIFACTS, else a temp folder); with R1_UPDATE_DOCS_SHOT=1 the 1280x800 one also goes to docs/console.png (the README's)."""

from __future__ import annotations

import concurrent.futures
import json
import os
import re
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.support.daemons import HF_NAME, R1, Daemon, private_daemon
from tests.support.fakehub import FakeHub
from tests.support.loopback import free_port
from tests.support.polling import wait_until
from tests.support.tinymodels import write_tiny_bert, write_tiny_gguf

CHROMIUM = Path("/usr/bin/chromium")
DOCS_SHOT = Path(__file__).resolve().parent.parent / "docs" / "console.png"
# Chromium's own guard for loopback (Local Network Access) would stop a foreign page's request before it
# left the browser; off, so that what refuses it in the test is r1's guard.
BROWSER_GUARD_OFF = ("--disable-features=LocalNetworkAccessChecks,BlockInsecurePrivateNetworkRequests,"
                     "PrivateNetworkAccessRespectPreflightResults")
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 800}


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    where = os.environ.get("R1_TEST_ARTIFACTS")
    folder = Path(where) / "console" if where else tmp_path_factory.mktemp("console-shots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        pytest.fail(f"the console tests drive Debian's chromium at {CHROMIUM}, which is missing: "
                    "run `apt-get install -y chromium` (as root; .ci/run does it)", pytrace=False)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox", BROWSER_GUARD_OFF])
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Any, gemma_daemon: Daemon) -> Iterator[Any]:
    """A fresh page on the console over TCP, its errors collected and checked at the end."""
    context = browser.new_context(viewport=DESKTOP)
    opened = context.new_page()
    errors: list[str] = []
    opened.on("pageerror", lambda error: errors.append(str(error)))
    opened.set_default_timeout(60_000)
    opened.goto(f"http://127.0.0.1:{gemma_daemon.port}/ui")
    opened.wait_for_selector("#connection:has-text('live')")
    yield opened
    context.close()
    assert not errors, f"the page's JavaScript failed: {errors}"


def shot(page: Any, artifacts: Path, name: str) -> None:
    page.screenshot(path=str(artifacts / f"{name}.png"), full_page=True)


def row(page: Any, model: str) -> Any:
    return page.locator(f"#models tbody tr[data-model='{model}']")


def segment(page: Any, model: str) -> Any:
    return page.locator(f"#memory-bar .segment[data-model='{model}']")


def ask(page: Any, model: str, prompt: str, max_tokens: int) -> Any:
    """Send a chat message from the page; the answer's <article>, newest first."""
    page.select_option("#chat-model", model)
    page.fill("#chat-max", str(max_tokens))
    page.fill("#chat-prompt", prompt)
    page.click("#chat-send")
    return page.locator("#answers .answer").first


def unload_all(daemon: Daemon) -> None:
    status, ps = daemon.request("GET", "/api/ps")
    for model in ps["models"]:
        daemon.request("POST", "/api/generate", {"model": model["name"], "keep_alive": 0})


def test_model_list_shows_the_store(page: Any, artifacts: Path) -> None:
    row(page, "gemma:latest").wait_for()
    row(page, "smollm2:135m").wait_for()
    assert "gguf" in row(page, "smollm2:135m").inner_text().lower()
    # every control has a name a screen reader can say
    unnamed = page.evaluate("""[...document.querySelectorAll('input, select, textarea, button')]
        .filter(e => !(e.labels && e.labels.length) && !e.getAttribute('aria-label') && !e.textContent.trim())
        .map(e => e.outerHTML)""")
    assert unnamed == []
    shot(page, artifacts, "1-models")
    background = "getComputedStyle(document.body).backgroundColor"
    light = page.evaluate(background)
    page.emulate_media(color_scheme="dark")  # the system's choice, followed
    assert page.evaluate(background) != light
    shot(page, artifacts, "1-models-dark")


def test_load_then_unload_from_the_page_moves_the_memory_bar(page: Any, gemma_daemon: Daemon,
                                                             artifacts: Path) -> None:
    unload_all(gemma_daemon)
    page.wait_for_selector("#memory-text:has-text('by 0 models')")
    page.click("button[aria-label='load gemma-chat:latest']")
    segment(page, "gemma-chat:latest").wait_for()
    # Retried until they hold: each `ps` event (the runner's size measured after its load) redraws the bar and
    # the list, and on two busy cores the load may take a while.
    wait_until(lambda: (segment(page, "gemma-chat:latest").bounding_box() or {}).get("width", 0) > 0, timeout=60)
    item = page.locator("#loaded li[data-model='gemma-chat:latest']")
    expect(item.locator(".slots")).to_have_text(re.compile(r"slots \d+/\d+ busy"), timeout=60_000)
    expect(item.locator(".countdown")).to_have_text(re.compile(r"^unloads in \d+:\d\d$"), timeout=60_000)  # keep-alive
    shot(page, artifacts, "2-loaded")
    item.get_by_role("button", name="unload gemma-chat:latest").click()
    segment(page, "gemma-chat:latest").wait_for(state="detached")
    page.wait_for_selector("#memory-text:has-text('by 0 models')")
    shot(page, artifacts, "3-unloaded")


def test_a_chat_answer_streams_in_and_ends_with_its_stats(page: Any, artifacts: Path) -> None:
    answer = ask(page, "smollm2:135m", "Count from 1 to 100, separated by commas.", 64)
    content = answer.locator(".content")
    lengths: list[int] = []
    deadline = time.monotonic() + 120
    while answer.get_attribute("data-done") is None and time.monotonic() < deadline:
        lengths.append(len(content.inner_text()))
        time.sleep(0.01)
    assert answer.get_attribute("data-done") == "true", answer.inner_text()
    growing = sorted({n for n in lengths if n > 0})
    assert len(growing) >= 3, f"the answer did not grow over several reads: {lengths}"
    assert len(content.inner_text()) > growing[0]
    assert re.search(r"\d+ tokens · [\d.]+ tokens/s", answer.locator(".stats").inner_text())
    segment(page, "smollm2:135m").wait_for()  # the chat loaded it
    shot(page, artifacts, "4-chat")
    if os.environ.get("R1_UPDATE_DOCS_SHOT") == "1":  # the README's picture, made again only when asked
        page.screenshot(path=str(DOCS_SHOT))
    page.set_viewport_size(PHONE)
    wide = page.evaluate("""[...document.querySelectorAll('body *')].filter(e => e.getBoundingClientRect().right > innerWidth)
        .map(e => e.tagName + '#' + e.id + '.' + e.className).slice(0, 8)""")
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"], f"wider than a phone: {wide}"
    shot(page, artifacts, "5-phone")


def test_the_thinking_is_collapsed_and_opens(page: Any, artifacts: Path) -> None:
    answer = ask(page, "thinker:latest", "2+2?", 8)
    answer.locator(".stats:has-text('tokens')").wait_for()
    thinking = answer.locator("details.thinking")
    assert thinking.is_visible() and thinking.get_attribute("open") is None
    assert not answer.locator(".thinking-text").is_visible()
    thinking.locator("summary").focus()
    page.keyboard.press("Enter")  # opened from the keyboard
    assert thinking.get_attribute("open") is not None
    assert answer.locator(".thinking-text").text_content()  # what the model thought, now shown
    shot(page, artifacts, "6-thinking")


def test_a_pull_shows_its_progress_to_100_percent_and_the_model(page: Any, hub: FakeHub, gemma_daemon: Daemon,
                                                                artifacts: Path, tmp_path: Path) -> None:
    weights = write_tiny_gguf(tmp_path / "console-Q4_K_M.gguf", seed=19)
    hub.add_repo("acme/console-GGUF", {"console-Q4_K_M.gguf": weights})
    name = "hf.co/acme/console-GGUF:latest"
    hub.throttle(max(weights.stat().st_size // 3, 1))  # about three seconds: several progress events
    try:
        page.fill("#pull-name", "acme/console-GGUF")
        page.click("#pull-form button[type=submit]")
        bar = page.locator(f"#pulls li[data-name='{name}']")
        bar.wait_for()
        shot(page, artifacts, "7-pulling")
        page.wait_for_selector(f"#pulls li[data-name='{name}'][data-done='true']")
    finally:
        hub.throttle(None)
    assert bar.locator(".percent").inner_text() == "100%"
    assert bar.locator("progress").evaluate("p => p.value === p.max")
    row(page, name).wait_for()
    shot(page, artifacts, "8-pulled")
    page.once("dialog", lambda dialog: dialog.accept())
    page.click(f"button[aria-label='delete {name}']")
    row(page, name).wait_for(state="detached")
    status, tags = gemma_daemon.request("GET", "/api/tags")
    assert name not in {m["name"] for m in tags["models"]}


def test_a_pull_started_elsewhere_shows_up(page: Any, hub: FakeHub, gemma_daemon: Daemon, tmp_path: Path,
                                           artifacts: Path) -> None:
    weights = write_tiny_gguf(tmp_path / "elsewhere-Q4_K_M.gguf", seed=20)
    hub.add_repo("acme/elsewhere-GGUF", {"elsewhere-Q4_K_M.gguf": weights})
    name = "hf.co/acme/elsewhere-GGUF:latest"
    hub.throttle(max(weights.stat().st_size // 3, 1))
    try:
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            pulled = pool.submit(gemma_daemon.cli, "pull", "acme/elsewhere-GGUF")  # as `r1 pull` in a terminal
            bar = page.locator(f"#pulls li[data-name='{name}']")
            bar.wait_for()
            assert bar.get_attribute("data-done") == "false"
            shot(page, artifacts, "8b-pull-from-the-cli")
            pulled.result(timeout=120)
    finally:
        hub.throttle(None)
    page.wait_for_selector(f"#pulls li[data-name='{name}'][data-done='true']")
    assert bar.locator(".percent").inner_text() == "100%"
    row(page, name).wait_for()
    gemma_daemon.cli("rm", name)


def first_pulls_event(daemon: Daemon) -> list[dict[str, Any]]:
    """The pulls under way, as GET /api/events tells them first."""
    with urllib.request.urlopen(f"http://127.0.0.1:{daemon.port}/api/events", timeout=30) as stream:
        event = ""
        for line in stream:
            if line.startswith(b"event:"):
                event = line[6:].decode().strip()
            elif line.startswith(b"data:") and event == "pulls":
                return json.loads(line[5:])["pulls"]
    raise AssertionError("the events stream ended without a pulls event")


def test_a_pull_shows_its_speed_and_eta_and_its_cancel_button_ends_it(page: Any, hub: FakeHub, gemma_daemon: Daemon,
                                                                      artifacts: Path, tmp_path: Path) -> None:
    weights = write_tiny_gguf(tmp_path / "slow-Q4_K_M.gguf", seed=21)
    hub.add_repo("acme/slow-GGUF", {"slow-Q4_K_M.gguf": weights})
    name = "hf.co/acme/slow-GGUF:latest"
    partial_before = set((gemma_daemon.home / "partial").iterdir())
    hub.throttle(max(weights.stat().st_size // 30, 1))  # about thirty seconds: it is cancelled long before
    try:
        page.fill("#pull-name", "acme/slow-GGUF")
        page.click("#pull-form button[type=submit]")
        bar = page.locator(f"#pulls li[data-name='{name}']")
        # Computed in the page from successive `pulls` events: the rate, then the time left at that rate.
        expect(bar.locator(".pull-state")).to_have_text(re.compile(r" · [\d.]+ [KMG]?B/s · (\d+ s|\d+:\d\d) left$"))
        shot(page, artifacts, "7b-pull-speed")
        page.set_viewport_size(PHONE)
        shot(page, artifacts, "7c-pull-speed-phone")
        bar.get_by_role("button", name=f"cancel the pull of {name}").click()
        bar.wait_for(state="detached")
    finally:
        hub.throttle(None)
        page.set_viewport_size(DESKTOP)
    expect(page.locator("#pull-status")).to_contain_text("cancelled")
    assert first_pulls_event(gemma_daemon) == []
    assert set((gemma_daemon.home / "partial").iterdir()) == partial_before, "a partial file stayed behind"
    status, tags = gemma_daemon.request("GET", "/api/tags")
    assert name not in {m["name"] for m in tags["models"]}
    shot(page, artifacts, "7d-pull-cancelled")


def test_deleting_a_loaded_model_unloads_it_from_the_page(page: Any, gemma_daemon: Daemon, artifacts: Path) -> None:
    """gemma's weights have other names (gemma-chat, ...): the name deleted must still leave the memory."""
    unload_all(gemma_daemon)
    for name in ("console-rm", "console-rm-cli"):
        gemma_daemon.cli("cp", "gemma", name)
    page.reload()
    page.wait_for_selector("#connection:has-text('live')")
    for name, remove in (("console-rm:latest", "page"), ("console-rm-cli:latest", "cli")):
        page.click(f"button[aria-label='load {name}']")
        item = page.locator(f"#loaded li[data-model='{name}']")
        item.wait_for()
        if remove == "page":
            page.once("dialog", lambda dialog: dialog.accept())
            page.click(f"button[aria-label='delete {name}']")
        else:  # `r1 rm` in a terminal while the page is open
            gemma_daemon.cli("rm", name)
        item.wait_for(state="detached")
        row(page, name).wait_for(state="detached")
        assert name not in {m["name"] for m in gemma_daemon.request("GET", "/api/ps")[1]["models"]}
        assert "could not" not in page.inner_text("#memory") + page.inner_text("#pull-status")
    shot(page, artifacts, "3b-deleted-while-loaded")


def placeholders_cut(page: Any) -> list[str]:
    """The visible inputs whose placeholder is wider than the room for it."""
    return page.evaluate("""[...document.querySelectorAll('input[placeholder]')].filter(e => e.offsetParent).flatMap(e => {
        const style = getComputedStyle(e), context = document.createElement('canvas').getContext('2d');
        context.font = style.font;
        const room = e.clientWidth - parseFloat(style.paddingLeft) - parseFloat(style.paddingRight)
                     - (e.type === 'number' ? 20 : 0);  // a number field's spin buttons
        const width = context.measureText(e.placeholder).width;
        return width > room ? [`${e.id}: ${e.placeholder} (${Math.ceil(width)} px in ${Math.floor(room)})`] : [];
    })""")


def mid_word_breaks(page: Any) -> list[str]:
    """Model names in the table that wrap anywhere but after a `/`, `:`, `-` or `.`."""
    return page.evaluate("""[...document.querySelectorAll('#models tbody td:first-child')].flatMap(td => {
        const cell = td.querySelector('.model-name') || td, range = document.createRange(), found = [];
        const walker = document.createTreeWalker(cell, NodeFilter.SHOW_TEXT), nodes = [];
        while (walker.nextNode()) nodes.push(walker.currentNode);
        let previous = null, top = null;
        for (const node of nodes) {
            for (let i = 0; i < node.length; i++) {
                range.setStart(node, i); range.setEnd(node, i + 1);
                const y = range.getBoundingClientRect().top;
                if (top !== null && y > top + 2 && !'/:-.'.includes(previous)) found.push(cell.textContent + ' before ' + node.data.slice(i));
                top = y; previous = node.data[i];
            }
        }
        return found;
    })""")


@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["1280", "390"])
def test_the_layout_fits_at_both_widths(page: Any, gemma_daemon: Daemon, artifacts: Path,
                                        viewport: dict[str, int]) -> None:
    long_name = "hf.co/bartowski/Llama-3.2-3B-Instruct-GGUF:Q4_K_M"
    if long_name not in {m["name"] for m in gemma_daemon.request("GET", "/api/tags")[1]["models"]}:
        gemma_daemon.cli("cp", HF_NAME, long_name)
    page.set_viewport_size(viewport)
    page.reload()
    page.wait_for_selector("#connection:has-text('live')")
    row(page, long_name).wait_for()
    shot(page, artifacts, f"12-layout-{viewport['width']}")  # before the checks: a failure's picture too
    assert not page.locator("#key").is_visible(), "the API-key field shows though this daemon asks for none"
    assert placeholders_cut(page) == []
    wrap = page.locator("#store .table-wrap")
    fits = wrap.evaluate("w => [w.scrollWidth, w.clientWidth]")
    assert fits[0] <= fits[1], f"the models table is {fits[0]} px wide in {fits[1]}"
    assert mid_word_breaks(page) == []


def test_the_chat_picker_offers_chat_models_and_starts_on_the_loaded_one(page: Any, gemma_daemon: Daemon,
                                                                         artifacts: Path, tmp_path: Path) -> None:
    embedder = "console-embed:latest"
    if embedder not in {m["name"] for m in gemma_daemon.request("GET", "/api/tags")[1]["models"]}:
        gemma_daemon.cli("import", str(write_tiny_bert(tmp_path / "embed.gguf")), "--name", embedder)
    unload_all(gemma_daemon)
    for name in ("tiny:latest", "smollm2:135m"):  # smollm2 used last: the most recent in /api/ps
        status, _ = gemma_daemon.request("POST", "/api/generate", {"model": name})
        assert status == 200
    page.reload()
    page.wait_for_selector("#connection:has-text('live')")
    row(page, embedder).wait_for()  # in the store's table, though not in the picker
    expect(page.locator("#chat-model")).to_have_value("smollm2:135m")
    offered = page.locator("#chat-model option").evaluate_all("options => options.map(o => o.value)")
    assert "tiny:latest" in offered and embedder not in offered
    shot(page, artifacts, "13-picker")
    page.select_option("#chat-model", "tiny:latest")  # the user's choice stays when the loaded models change
    gemma_daemon.request("POST", "/api/generate", {"model": "thinker:latest"})
    page.wait_for_selector("#loaded li[data-model='thinker:latest']")
    assert page.input_value("#chat-model") == "tiny:latest"
    unload_all(gemma_daemon)


def test_a_foreign_origin_is_refused_over_tcp(page: Any, gemma_daemon: Daemon, artifacts: Path) -> None:
    base = f"http://127.0.0.1:{gemma_daemon.port}"
    for path in ("/ui", "/api/events", "/api/tags"):
        answer = page.request.get(base + path, headers={"Origin": "http://evil.example"})
        assert answer.status == 403 and "R1_ORIGINS" in answer.json()["error"], path
    # A page of another site, fetching from the daemon: the guard answers 403 (its access log says so) and
    # the page reads nothing.
    page.route("http://evil.example/**", lambda route: route.fulfill(body="<h1>elsewhere</h1>",
                                                                       content_type="text/html"))
    page.goto("http://evil.example/")
    refused = "GET /api/version 403"
    before = gemma_daemon.log().count(refused)
    failed = page.evaluate(f"fetch('{base}/api/version').then(r => 'read ' + r.status, e => 'failed: ' + e)")
    assert failed.startswith("failed"), failed
    wait_until(lambda: gemma_daemon.log().count(refused) == before + 1)
    shot(page, artifacts, "9-foreign-origin")


USAGE = {"day": [{"key": "2026-11-29", "requests": 3, "prompt_tokens": 120, "output_tokens": 300, "thinking_tokens": 0,
                  "tokens_per_s": 40.0, "cost": None},
                 {"key": "2026-11-30", "requests": 5, "prompt_tokens": 200, "output_tokens": 800, "thinking_tokens": 50,
                  "tokens_per_s": 52.5, "cost": None}],
         "model": [{"key": "smollm2:135m", "requests": 6, "prompt_tokens": 250, "output_tokens": 900,
                    "thinking_tokens": 0, "tokens_per_s": 55.0, "cost": None},
                   {"key": "gemma-chat:latest", "requests": 2, "prompt_tokens": 70, "output_tokens": 200,
                    "thinking_tokens": 50, "tokens_per_s": 30.0, "cost": None}]}


def test_usage_charts_are_drawn_from_api_usage_and_wait_for_the_log(page: Any, gemma_daemon: Daemon,
                                                                    artifacts: Path) -> None:
    # The session daemon's own request log: the models it answered for this session are in the chart.
    answered = {row["key"] for row in gemma_daemon.request("GET", "/api/usage?by=model&since=1d")[1]["usage"]}
    models = page.locator("#chart-models svg")
    models.wait_for()
    assert answered and all(f"{key}:" in models.get_attribute("aria-label") for key in answered if key)
    # Given answers: the bars' labels and heights follow the numbers.
    def usage(route: Any) -> None:
        by = "day" if "by=day" in route.request.url else "model"
        route.fulfill(json={"by": by, "since": "30d", "logging": True, "usage": USAGE[by]})

    page.route("**/api/usage?*", usage)
    page.reload()
    days, models = page.locator("#chart-days svg"), page.locator("#chart-models svg")
    days.wait_for()
    assert days.locator("rect.datum").count() == 2 and models.locator("rect.datum").count() == 2
    assert "11-30: 1050 tokens" in days.get_attribute("aria-label")  # prompt + output + thinking
    assert "smollm2:135m: 55 tokens/s" in models.get_attribute("aria-label")
    heights = [float(r.get_attribute("height")) for r in days.locator("rect.datum").all()]
    assert heights[1] > heights[0] > 0
    shot(page, artifacts, "11-usage")
    page.unroute("**/api/usage?*")
    page.route("**/api/usage?*", lambda route: route.fulfill(status=404, json={"error": "404: Not Found"}))
    page.reload()
    page.wait_for_selector("#usage-note:has-text('usage appears once the request log is on')")
    assert page.locator("#chart-days svg").count() == 0


def test_a_key_entered_once_opens_a_keyed_daemon(browser: Any, tmp_path: Path, artifacts: Path) -> None:
    port = free_port()
    with private_daemon(tmp_path, R1_HOST=f"127.0.0.1:{port}", R1_API_KEY="sesame") as keyed:
        context = browser.new_context(viewport=DESKTOP)
        page = context.new_page()
        page.goto(f"http://127.0.0.1:{keyed.port}/ui")  # the page itself needs no key
        page.wait_for_selector("#connection:has-text('needs its API key')")
        assert page.locator("#key").is_visible()  # shown once the daemon asks for a key, its placeholder whole
        assert placeholders_cut(page) == []
        page.set_viewport_size(PHONE)
        assert placeholders_cut(page) == []
        shot(page, artifacts, "10-key-asked-phone")
        page.set_viewport_size(DESKTOP)
        page.fill("#key", "sesame")
        page.keyboard.press("Enter")
        page.wait_for_selector("#connection:has-text('live')")
        page.reload()  # kept in localStorage
        page.wait_for_selector("#connection:has-text('live')")
        assert page.input_value("#key") == "sesame"
        shot(page, artifacts, "10-keyed")
        context.close()


def test_r1_ui_opens_the_tcp_listener_and_the_browser(daemon: Daemon, tmp_path: Path) -> None:
    """A daemon without TCP: `r1 ui` opens the listener (as `r1 launch` does) and hands the URL to the browser."""
    status, listening = daemon.request("GET", "/api/tcp")
    assert status == 200 and listening["address"] is None
    opened = tmp_path / "opened"
    browser_script = tmp_path / "browser"
    browser_script.write_text(f'#!/bin/sh\necho "$1" > {opened}\n')
    browser_script.chmod(0o755)
    result = subprocess.run([R1, "ui"], env={**daemon.env, "BROWSER": f"{browser_script} %s"},
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    status, listening = daemon.request("GET", "/api/tcp")
    url = f"http://{listening['address']}/ui"
    assert result.stdout.strip() == f"opened {url}"
    wait_until(opened.exists)
    assert opened.read_text().strip() == url
    with urllib.request.urlopen(url, timeout=10) as page:
        assert "<title>r1 console</title>" in page.read().decode()
    assert daemon.cli("ui", "--print").stdout.strip() == url  # the listener already open: the same one


def test_r1_ui_prints_the_console_url(gemma_daemon: Daemon) -> None:
    from r1.cli.ui import console_url

    assert gemma_daemon.cli("ui", "--print").stdout.strip() == f"http://127.0.0.1:{gemma_daemon.port}/ui"
    assert console_url("0.0.0.0:8080") == "http://127.0.0.1:8080/ui"
    assert console_url("[::1]:9") == "http://[::1]:9/ui"
