"""Screenshot the toggle panel of notebooks/interactive.ipynb running in a real JupyterLab (docs/jupyter_toggle.png).

Start a server first (JupyterLab is not a project requirement: `pip install jupyterlab` into any venv
that also has requirements.txt), then run this with the same token:

    jupyter lab --no-browser --port 8640 --ServerApp.token=TOKEN --allow-root --ServerApp.root_dir=notebooks
    python tools/jupyter_screenshot.py --token TOKEN [--port 8640] [--out docs/jupyter_toggle.png]

It opens the notebook in headless Chromium (Debian's /usr/bin/chromium), runs the setup cell and the
toggle-panel cell, clicks two unit switches off in the browser, waits for the accuracy to follow and
screenshots the window with the cell and its panel.
"""
from __future__ import annotations

import argparse
import json
import re
import urllib.request

from playwright.sync_api import Page, TimeoutError, expect, sync_playwright

FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-quic", "--no-first-run",
         "--disable-component-update", "--disable-sync"]
PANEL_TITLE = "Live toggles — conv2"


def run_cell(page: Page, index: int) -> None:
    """Run code cell ``index`` of the open notebook (Shift+Enter on it) and wait for its execution count."""
    cell = page.locator(".jp-Notebook .jp-CodeCell").nth(index)
    for attempt in range(3):  # a dialog or a late kernel can swallow the first Shift+Enter
        while page.locator(".jp-Dialog").count():
            page.keyboard.press("Escape")
            page.wait_for_timeout(500)
        cell.locator(".jp-InputPrompt").click()  # selects the cell (command mode)
        page.keyboard.press("Shift+Enter")
        try:
            cell.locator(".jp-InputPrompt").filter(has_text=re.compile(r"\[[\d*]+\]")).wait_for(timeout=20_000)
            break
        except TimeoutError:
            continue
    cell.locator(".jp-InputPrompt").filter(has_text=re.compile(r"\[\d+\]")).wait_for(timeout=300_000)


def end_sessions(base: str, token: str) -> None:
    """Shut down the server's running kernels, so the notebook runs on the code as it is now."""
    with urllib.request.urlopen(f"{base}/api/sessions?token={token}") as answer:
        sessions = json.load(answer)
    for session in sessions:
        urllib.request.urlopen(urllib.request.Request(f"{base}/api/sessions/{session['id']}?token={token}",
                                                      method="DELETE"))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--token", required=True)
    parser.add_argument("--port", type=int, default=8640)
    parser.add_argument("--out", default="docs/jupyter_toggle.png")
    parser.add_argument("--off", default="17,6", help="units to click off in the browser")
    args = parser.parse_args()
    base = f"http://localhost:{args.port}"
    end_sessions(base, args.token)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", headless=True, args=FLAGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1060})
        page.goto(f"{base}/lab/tree/interactive.ipynb?reset&token={args.token}", timeout=120_000)
        page.locator(".jp-Notebook .jp-CodeCell").first.wait_for(timeout=120_000)
        page.locator(".jp-Notebook-ExecutionIndicator[data-status='idle']").first.wait_for(timeout=120_000)
        for name in ("No",):  # the "get notified about Jupyter news?" toast would cover the panel
            toast = page.get_by_role("button", name=name, exact=True)
            if toast.count():
                toast.first.click()
        browser_tab = page.locator(".jp-SideBar.jp-mod-left .lm-TabBar-tab.lm-mod-current")
        if browser_tab.count():
            browser_tab.first.click()  # fold the file browser: the panel gets the width
        run_cell(page, 0)
        run_cell(page, 1)
        panel = page.locator(".jp-OutputArea-output").filter(has_text=PANEL_TITLE).first
        panel.wait_for(timeout=120_000)
        metrics = panel.locator(".widget-html-content").filter(has_text="Units off").first
        for unit in args.off.split(","):
            before = metrics.inner_text()
            panel.get_by_role("button", name=f"{unit}: on", exact=True).click()
            panel.get_by_role("button", name=f"{unit}: off", exact=True).wait_for(timeout=60_000)
            expect(metrics).not_to_have_text(before, timeout=60_000)  # the kernel answered the click
        page.mouse.move(5, 5)  # no hover toolbars on the charts
        page.wait_for_timeout(2500)  # plotly redraws
        page.locator(".jp-Notebook .jp-CodeCell").nth(1).evaluate("e => e.scrollIntoView({block: 'start'})")
        page.wait_for_timeout(1000)
        page.screenshot(path=args.out)  # JupyterLab itself, the cell and its panel
        browser.close()


if __name__ == "__main__":
    main()
