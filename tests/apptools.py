"""What the AppTest modules share: opening a page, reading elements, waiting for a job."""
import time
from pathlib import Path

from streamlit.testing.v1 import AppTest

APP = str(Path(__file__).resolve().parents[1] / "streamlit_app.py")


def app(page: str | None = None) -> AppTest:
    """A new browser session (``AppTest``) on ``page``, checked to raise nothing."""
    at = AppTest.from_file(APP, default_timeout=120)
    at.run()
    assert not at.exception, at.exception
    if page:
        at.switch_page(page).run()
        assert not at.exception, at.exception
    return at


def texts(elements) -> list[str]:
    return [e.value for e in elements]


def status(at: AppTest) -> str:
    """The Train page's one status line (the progress bar's text)."""
    return at.get("progress")[0].proto.text


def wait_for_finish(at: AppTest, timeout: float = 60.0) -> None:
    """Rerun every second until the Train page says the job finished or stopped."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        time.sleep(1.0)
        at.run()
        assert not at.exception, at.exception
        if status(at).startswith(("Finished", "Stopped")):
            return
    raise AssertionError(f"training did not finish: {status(at)}")
