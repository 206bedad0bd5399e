"""End to end in Chromium (Playwright, sync API) against ``streamlit run streamlit_app.py``:
every page opens without an exception or error box, uploads are checked on arrival, a short
training run starts (settings folded away) and stops, a second tab sees the run and
generates from its downloaded model, poems are shaded, the spectral-radius slider moves
into explosion, the Benchmarks page leads with its conclusions, the Architectures page
shows the chapter's eight experiments. Screenshots of every page go
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


def _no_truncated_metrics(page) -> None:
    """Every metric value fits its column (no "5,025 ch…")."""
    cut = page.evaluate(
        "() => [...document.querySelectorAll('[data-testid=\"stMetricValue\"]')]"
        ".filter(e => e.scrollWidth > e.clientWidth + 1).map(e => e.innerText)")
    assert cut == [], f"metric values cut off: {cut}"


def _first_chart_top(page, timeout_s: float = 30) -> float:
    """Top of the first drawn chart, in page pixels. The live view reruns every second and
    may be replacing the chart at any moment, so the lookup and the measurement are one
    script call in the page, retried until a chart with a box is there."""
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        top = page.evaluate(
            "() => { for (const e of document.querySelectorAll("
            "'[data-testid=\"stPlotlyChart\"]')) { const r = e.getBoundingClientRect();"
            " if (r.height > 0) return r.top + window.scrollY; } return null; }")
        if top is not None:
            return top
        page.wait_for_timeout(250)
    raise AssertionError("no chart was drawn")


TWO_POEMS = "白日依山盡，黃河入海流。欲窮千里目，更上一層樓。\n床前明月光，疑是地上霜。舉頭望明月，低頭思故鄉。\n"


def test_every_page_in_a_browser(server, page):
    page.goto(server["url"])
    page.get_by_text("rnncore — recurrent networks").first.wait_for()
    _settle(page)
    assert page.get_by_text("Compute device").count() >= 1
    _assert_clean(page, "1-home")

    # Train: a bad upload and a too-small one give a one-line message at once
    _nav(page, "Train")
    page.get_by_text("Train a character-level poet").wait_for()
    page.get_by_text("Upload a file").click()
    _settle(page)
    dropzone = page.locator('[data-testid="stFileUploaderDropzoneInput"]')
    assert "50 MB" in page.get_by_test_id("stFileUploader").inner_text()
    dropzone.set_input_files(
        files=[{"name": "bad.json", "mimeType": "application/json", "buffer": b"{not json"}])
    _settle(page)
    error = page.locator('[data-testid="stAlertContentError"]')
    error.first.wait_for()
    assert "bad.json" in error.first.inner_text() and "Traceback" not in page.inner_text("body")
    assert page.get_by_role("button", name="Start training").is_disabled()
    dropzone.set_input_files(
        files=[{"name": "two.txt", "mimeType": "text/plain", "buffer": TWO_POEMS.encode()}])
    _settle(page)
    page.get_by_text(re.compile(r"two\.txt: 2 poems are too few to train on")).wait_for()
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
    page.get_by_text(re.compile(r"^Training at step \d+ — ")).wait_for(timeout=60_000)
    page.get_by_text(re.compile(r"^step \d+$")).first.wait_for(timeout=90_000)  # a sample poem
    # while it trains, the settings are folded away (the charts start near the top) and locked
    settings = page.get_by_test_id("stExpander").first
    assert "locked while your run trains" in settings.inner_text()
    assert settings.locator("details").get_attribute("open") is None
    assert _first_chart_top(page) < 800
    _screenshot(page, "2a-train-running")
    main.get_by_role("button", name="Stop", exact=True).click()
    page.get_by_text(re.compile(r"^Stopped by you at step \d+ — ")).wait_for(timeout=60_000)
    _settle(page)
    _expect_count(page.locator('[data-testid="stPlotlyChart"]'), 3)
    assert page.get_by_text(re.compile(r"^stopped:", re.I)).count() == 0  # one status line
    _no_truncated_metrics(page)
    _assert_clean(page, "2-train")
    assert list(server["runs"].glob("*/step-*/meta.json")), "no checkpoint saved on Stop"
    with page.expect_download() as download:
        main.get_by_role("button", name="Download model (.zip)").click()
    model_zip = Path(download.value.path()).read_bytes()

    # a new tab is a new session: it lists the run on disk, and Generate takes the download
    other = page.context.new_page()
    other.goto(f"{server['url']}/train")
    other.get_by_text("Train a character-level poet").wait_for()
    _settle(other)
    other.get_by_text(re.compile(r"^Stopped by you at step \d+ — ")).wait_for()
    assert other.get_by_text("No training run in this session").count() == 0
    _expect_count(other.locator('[data-testid="stPlotlyChart"]'), 3)
    _assert_clean(other, "2b-train-new-tab")
    _nav(other, "Generate")
    other.get_by_text("Upload a checkpoint (.zip)").click()
    _settle(other)
    other.locator('[data-testid="stFileUploaderDropzoneInput"]').set_input_files(
        files=[{"name": "run.zip", "mimeType": "application/zip", "buffer": model_zip}])
    _settle(other)
    other.get_by_text(re.compile(r"^LSTM 1×128, vocabulary")).wait_for()
    other.locator(".rc-poem").first.wait_for()
    _assert_clean(other, "3b-generate-uploaded-run")
    other.close()

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
    shaded = page.locator(".rc-poem span[title]")
    assert shaded.count() == 64
    assert len(set(shaded.evaluate_all("els => els.map(e => e.style.background)"))) >= 3
    page.get_by_text("Vertical, right to left").click()
    page.get_by_test_id("stMainBlockContainer").get_by_role(
        "button", name="Generate", exact=True).click()
    _settle(page)
    page.locator(".rc-poem.rc-vertical").first.wait_for()
    _assert_clean(page, "3-generate")

    # Gradient flow: every chart, then move the spectral-radius slider into explosion
    _nav(page, "Gradient Flow")
    page.get_by_text("3. Spectral radius of W_hh").wait_for(timeout=120_000)
    _settle(page, 120)
    _expect_count(page.locator('[data-testid="stPlotlyChart"]'), 6)
    before = page.get_by_text(re.compile(r"The spectral radius ρ = ")).inner_text()
    assert "the gradient vanishes" in before
    thumb = page.get_by_role("slider", name=re.compile("spectral radius"))
    thumb.focus()
    for _ in range(6):
        thumb.press("ArrowRight")
    _settle(page, 60)
    page.get_by_text(re.compile(r"The spectral radius ρ = 1\.30")).wait_for()
    after = page.get_by_text(re.compile(r"The spectral radius ρ = ")).inner_text()
    assert after != before and "the gradient explodes" in after
    _assert_clean(page, "4-gradient-flow")

    # Benchmarks: the conclusions first, each linked to its chart
    _nav(page, "Benchmarks")
    page.get_by_text("What to choose").first.wait_for()
    page.get_by_text("Run a small benchmark on this machine").wait_for()
    assert page.get_by_role("link", name="See the chart").count() >= 5
    _assert_clean(page, "5-benchmarks")

    # Architectures: the chapter's eight experiments with their figures (the shipped
    # results, and the leaky and tree probes computed on opening)
    _nav(page, "Architectures")
    page.get_by_text("8. Recursive networks").wait_for(timeout=120_000)
    _settle(page, 120)
    _expect_count(page.locator('[data-testid="stPlotlyChart"]'), 10)
    assert page.get_by_text(re.compile(r"^What the data say\.")).count() == 9  # readers: 2
    _assert_clean(page, "6-architectures")
