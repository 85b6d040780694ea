"""Screenshot app pages in headless Chromium (Debian's /usr/bin/chromium) once Streamlit has rendered.

    python tools/screenshot.py http://localhost:8501/toggle docs/toggle.png [--wait-text "Accuracy"] [--height 1400]
"""
from __future__ import annotations

import argparse

from playwright.sync_api import sync_playwright

FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-quic", "--no-first-run",
         "--disable-component-update", "--disable-sync"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("out")
    parser.add_argument("--wait-text", default=None, help="wait until this text is on the page")
    parser.add_argument("--width", type=int, default=1500)
    parser.add_argument("--height", type=int, default=1100)
    parser.add_argument("--full-page", action="store_true")
    parser.add_argument("--click", action="append", default=[], help="click the button with this text first")
    parser.add_argument("--settle", type=int, default=2500, help="milliseconds to wait for charts and tables to draw")
    args = parser.parse_args()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", headless=True, args=FLAGS)
        page = browser.new_page(viewport={"width": args.width, "height": args.height})
        page.goto(args.url, timeout=120_000)
        page.wait_for_selector("[data-testid='stApp']", timeout=120_000)
        if args.wait_text:
            page.get_by_text(args.wait_text).first.wait_for(timeout=180_000)
        page.wait_for_function("!document.querySelector('[data-testid=\"stStatusWidget\"]')", timeout=180_000)
        for text in args.click:
            page.get_by_role("button", name=text).first.click()
            page.wait_for_timeout(1500)
            page.wait_for_function("!document.querySelector('[data-testid=\"stStatusWidget\"]')", timeout=180_000)
        page.wait_for_timeout(args.settle)  # plotly and images settle
        page.screenshot(path=args.out, full_page=args.full_page)
        browser.close()


if __name__ == "__main__":
    main()
