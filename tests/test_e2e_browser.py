"""End to end in Chromium (Playwright, sync API) against ``streamlit run streamlit_app.py``:
every page opens without an exception or error box, a short training run starts and
stops, a poem is generated, the spectral-radius slider moves, the Architectures page
shows its three experiments. Screenshots of every page go
to test-artifacts/screenshots/ (gitignored).

Skipped when /usr/bin/chromium is missing, unless RNNCORE_REQUIRE_BROWSER=1.
"""
import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
SHOTS = ROOT / "test-artifacts" / "screenshots"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def _require_browser() -> None:
    required = os.environ.get("RNNCORE_REQUIRE_BROWSER") == "1"
    problem = None
    if not CHROMIUM.exists():
        problem = f"{CHROMIUM} is missing"
    else:
        try:
            import playwright.sync_api  # noqa: F401
        except ImportError as exc:
            problem = f"playwright is not installed ({exc})"
    if problem:
        if required:
            pytest.fail(f"RNNCORE_REQUIRE_BROWSER=1 but {problem}")
        pytest.skip(problem)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    _require_browser()
    port = _free_port()
    runs = tmp_path_factory.mktemp("e2e-runs")
    env = dict(os.environ, RNNCORE_RUNS_DIR=str(runs), STREAMLIT_BROWSER_GATHER_USAGE_STATS="false")
    log = open(tmp_path_factory.mktemp("e2e-log") / "streamlit.log", "w+")
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", str(ROOT / "streamlit_app.py"),
         "--server.headless", "true", "--server.port", str(port),
         "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                if r.status == 200:
                    break
        except OSError:
            time.sleep(0.5)
        if proc.poll() is not None:
            break
    else:
        proc.kill()
        log.seek(0)
        pytest.fail(f"streamlit did not start:\n{log.read()[-3000:]}")
    if proc.poll() is not None:
        log.seek(0)
        pytest.fail(f"streamlit exited:\n{log.read()[-3000:]}")
    yield {"url": url, "runs": runs}
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
    log.close()


@pytest.fixture(scope="module")
def page(server):
    from playwright.sync_api import sync_playwright

    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1400, "height": 1000})
        pg = context.new_page()
        pg.set_default_timeout(60_000)
        yield pg
        context.close()
        browser.close()


def _settle(page, timeout_s: float = 180) -> None:
    """Wait until the script run finished (Streamlit's 'Running...' widget is gone)."""
    page.wait_for_timeout(300)
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        if page.locator('[data-testid="stStatusWidget"]').count() == 0:
            page.wait_for_timeout(300)
            if page.locator('[data-testid="stStatusWidget"]').count() == 0:
                return
        page.wait_for_timeout(250)
    raise AssertionError("the page kept running")


def _expect_count(locator, n: int, timeout_s: float = 30) -> None:
    """``locator`` matches ``n`` elements within ``timeout_s`` (a page that just ended a
    job redraws once more after the script run that showed it finished)."""
    from playwright.sync_api import expect

    expect(locator).to_have_count(n, timeout=timeout_s * 1000)


def _screenshot(page, name: str) -> None:
    """The whole page: Streamlit scrolls inside its main container, so grow the viewport
    to that container's height for the shot."""
    height = page.evaluate(
        "() => { const m = document.querySelector('[data-testid=\"stMain\"]');"
        " return m ? m.scrollHeight : document.body.scrollHeight; }")
    size = page.viewport_size
    page.set_viewport_size({"width": size["width"], "height": min(max(height, 600), 12000)})
    page.wait_for_timeout(500)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)
    page.set_viewport_size(size)


def _assert_clean(page, name: str) -> None:
    _screenshot(page, name)
    assert page.locator('[data-testid="stException"]').count() == 0, f"exception on {name}"
    errors = page.locator('[data-testid="stAlertContentError"]')
    assert errors.count() == 0, f"error box on {name}: {errors.all_inner_texts()}"
    assert "Traceback" not in page.inner_text("body"), f"traceback on {name}"


def _nav(page, label: str) -> None:
    # the sidebar link keeps the same session (a reload would start a new one)
    page.locator('[data-testid="stSidebarNav"]').get_by_text(label, exact=True).click()
    _settle(page)


def test_every_page_in_a_browser(server, page):
    page.goto(server["url"])
    page.get_by_text("rnncore — recurrent networks").first.wait_for()
    _settle(page)
    assert page.get_by_text("Compute device").count() >= 1
    _assert_clean(page, "1-home")

    # Train: a bad upload gives a one-line message, then a short run, then Stop
    _nav(page, "Train")
    page.get_by_text("Train a character-level poet").wait_for()
    page.get_by_text("Upload a file").click()
    _settle(page)
    page.locator('[data-testid="stFileUploaderDropzoneInput"]').set_input_files(
        files=[{"name": "bad.json", "mimeType": "application/json", "buffer": b"{not json"}])
    _settle(page)
    error = page.locator('[data-testid="stAlertContentError"]')
    error.first.wait_for()
    assert "bad.json" in error.first.inner_text() and "Traceback" not in page.inner_text("body")
    assert page.get_by_role("button", name="Start training").is_disabled()
    page.get_by_text("Bundled Tang poems").click()
    _settle(page)
    for label, value in (("Use at most this many poems (0 = all)", "200"),
                         ("Time budget (seconds)", "60")):
        box = page.get_by_role("spinbutton", name=label, exact=True)
        box.fill(value)
        box.press("Enter")
        _settle(page)
    main = page.get_by_test_id("stMainBlockContainer")
    main.get_by_role("button", name="Start training").click()
    page.get_by_text(re.compile(r"^Training — ")).wait_for(timeout=60_000)
    page.get_by_text(re.compile(r"^step \d+$")).first.wait_for(timeout=90_000)  # a sample poem
    main.get_by_role("button", name="Stop", exact=True).click()
    page.get_by_text(re.compile(r"stopped: stopped after \d+ steps")).wait_for(timeout=60_000)
    _settle(page)
    _expect_count(page.locator('[data-testid="stPlotlyChart"]'), 3)
    _assert_clean(page, "2-train")
    assert list(server["runs"].glob("*/step-*/meta.json")), "no checkpoint saved on Stop"

    # Generate: the bundled model writes a poem on opening (timed); a bad checkpoint
    # upload is refused
    t0 = time.perf_counter()
    _nav(page, "Generate")
    page.get_by_text("Generate poems").first.wait_for()
    page.locator(".rc-poem").first.wait_for()
    seconds = time.perf_counter() - t0
    (SHOTS.parent / "e2e-timings.json").write_text(
        json.dumps({"generate_first_poem_s": round(seconds, 3)}) + "\n")
    print(f"first poem on the Generate page after {seconds:.2f} s")
    page.get_by_text("Upload a checkpoint (.zip)").click()
    _settle(page)
    page.locator('[data-testid="stFileUploaderDropzoneInput"]').set_input_files(
        files=[{"name": "model.zip", "mimeType": "application/zip", "buffer": b"PK not a zip"}])
    _settle(page)
    page.get_by_text("upload is not a zip file").wait_for()
    page.get_by_text("Bundled model", exact=True).click()
    _settle(page)
    assert not page.locator('[data-testid="stAlertContentError"]').count()
    page.locator(".rc-poem").first.wait_for()
    poem = page.locator(".rc-poem").first.inner_text()
    assert len(re.sub(r"\s", "", poem)) == 64, poem  # 8 lines of 7 characters + marks
    assert page.locator(".rc-poem span[title^='p = ']").count() == 64
    page.get_by_text("Vertical, right to left").click()
    page.get_by_test_id("stMainBlockContainer").get_by_role(
        "button", name="Generate", exact=True).click()
    _settle(page)
    page.locator(".rc-poem.rc-vertical").first.wait_for()
    _assert_clean(page, "3-generate")

    # Gradient flow: every chart, then move the spectral-radius slider
    _nav(page, "Gradient Flow")
    page.get_by_text("3. Spectral radius of W_hh").wait_for(timeout=120_000)
    _settle(page, 120)
    _expect_count(page.locator('[data-testid="stPlotlyChart"]'), 6)
    before = page.get_by_text(re.compile(r"The spectral radius ρ = ")).inner_text()
    thumb = page.get_by_role("slider", name=re.compile("spectral radius"))
    thumb.focus()
    for _ in range(6):
        thumb.press("ArrowRight")
    _settle(page, 60)
    page.get_by_text(re.compile(r"The spectral radius ρ = 1\.30")).wait_for()
    assert page.get_by_text(re.compile(r"The spectral radius ρ = ")).inner_text() != before
    _assert_clean(page, "4-gradient-flow")

    _nav(page, "Benchmarks")
    page.get_by_text("Run a small benchmark on this machine").wait_for()
    _assert_clean(page, "5-benchmarks")

    # Architectures: the three experiments with their figures (computed on opening)
    _nav(page, "Architectures")
    page.get_by_text("3. Teacher forcing versus free running").wait_for(timeout=120_000)
    _settle(page, 120)
    _expect_count(page.locator('[data-testid="stPlotlyChart"]'), 4)
    assert page.get_by_text(re.compile(r"^What the data say\.")).count() == 3
    _assert_clean(page, "6-architectures")
