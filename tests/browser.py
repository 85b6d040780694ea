"""Playwright helpers for the browser tests: a real ``streamlit run explorer.py`` on a free port and Debian's
chromium. Run the browser tests alone with ``python3 tasks.py test -m browser``."""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pytest

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-quic", "--no-first-run",
         "--disable-component-update", "--disable-sync"]
PAGES = ["Overview", "Live toggles", "Rankings", "Ranked feature maps", "AM gallery", "Similar filters & clusters"]
IDLE_JS = "!document.querySelector('[data-testid=\"stStatusWidget\"]')"
PROBLEMS = "[data-testid='stException'], [data-testid='stAlertContentError']"


def need_chromium() -> None:
    if not Path(CHROMIUM).exists():
        message = "Debian's chromium is not installed (apt-get install chromium); tasks.py test installs it as root"
        if os.environ.get("NRE_REQUIRE_BROWSER"):
            pytest.fail(message)
        pytest.skip(message)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def streamlit_server(env: dict[str, str] | None = None, launcher: list[str] | None = None) -> Iterator[str]:
    """A fresh ``streamlit run explorer.py`` (own port, own empty disk cache); yields its URL. ``env``: the
    server's environment (default this process's); ``launcher``: what runs streamlit's command line (default
    ``python -m streamlit``; benchmarks/classroom_server.py adds server-side timing)."""
    port = free_port()
    cache = tempfile.mkdtemp(prefix="nre-browser-cache-")
    log = tempfile.NamedTemporaryFile("w+", prefix="streamlit-", suffix=".log", delete=False)
    env = {**(os.environ if env is None else env), "NRE_CACHE_DIR": cache}
    launcher = launcher or [sys.executable, "-m", "streamlit"]
    process = subprocess.Popen([*launcher, "run", "explorer.py", "--server.port", str(port),
                                "--server.headless", "true", "--server.address", "127.0.0.1"],
                               cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 60
        while True:
            try:
                if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).read() == b"ok":
                    break
            except OSError:
                pass
            if process.poll() is not None or time.time() > deadline:
                log.seek(0)
                raise RuntimeError(f"streamlit did not start:\n{log.read()[-3000:]}")
            time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
        log.seek(0)
        tracebacks = log.read().count("Traceback")
        log.close()
        os.unlink(log.name)
        shutil.rmtree(cache, ignore_errors=True)
        if tracebacks:
            print(f"server log had {tracebacks} traceback(s)")


def wait_idle(page, timeout: float = 180) -> None:
    """Until the script run (and any rerun it triggers) is over."""
    page.wait_for_timeout(400)
    page.wait_for_function(IDLE_JS, timeout=timeout * 1000)
    page.wait_for_timeout(300)
    page.wait_for_function(IDLE_JS, timeout=timeout * 1000)


def problems(page) -> list[str]:
    """Texts of exception elements and error boxes on the page."""
    return page.locator(PROBLEMS).all_inner_texts()


def open_page(page, url: str, name: str | None = None) -> None:
    """Go to ``url`` (when given) and click ``name`` in the sidebar navigation; wait for the run to end."""
    if url:
        page.goto(url, timeout=120_000)
        page.wait_for_selector("[data-testid='stSidebarNav'] a", timeout=120_000)
        page.wait_for_selector("[data-testid='stMain'] h1", timeout=120_000)  # every page has a title
        wait_idle(page)
    if name:
        nav(page, name).click()
        wait_idle(page)


def nav(page, name: str):
    return page.locator("[data-testid='stSidebarNav'] a").filter(has_text=name).first


def metric(page, label_start: str) -> str:
    """The value shown by the st.metric whose label starts with ``label_start`` (waits for it to appear)."""
    page.locator("[data-testid='stMetricLabel']").filter(has_text=label_start).first.wait_for(timeout=60_000)
    for box in page.locator("[data-testid='stMetric']").all():
        if box.locator("[data-testid='stMetricLabel']").inner_text().strip().startswith(label_start):
            return box.locator("[data-testid='stMetricValue']").inner_text().strip()
    raise AssertionError(f"no metric labelled {label_start!r}")


def stray_none(page) -> list[str]:
    """Elements whose whole text is 'None' (Streamlit magic writing a bare expression's value)."""
    return [t for t in page.locator("[data-testid='stMarkdownContainer'], h1, [data-testid='stText']").all_inner_texts()
            if t.strip() == "None"]
