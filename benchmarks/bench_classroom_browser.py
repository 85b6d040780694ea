"""Classroom benchmark in real browsers: N browser contexts on one ``streamlit run explorer.py``, before and
after the compute policy, idle and busy, in one run (the small-N side of issue 21's benchmark; the 30-session
side is benchmarks/bench_classroom.py, a lighter driver of the same server code).

    .venv/bin/python benchmarks/bench_classroom_browser.py [--sessions 1 8] [--toggles 5] [--repeats 1]

Each run starts a fresh server (its own empty disk cache) through benchmarks/classroom_server.py, which logs
every script run's server-side duration; the app is the shipped one. A "teacher" context opens the shared
link's Overview first (the server imports PyTorch and loads the model, as when a teacher shows the link).
Then:

- busy runs only: one context starts a fine-tune on the Compress page (the default plan, recipe paper-b: no
  early stopping, 200 epochs: minutes) and another opens Pruning curves on conv2, sets 30 random seeds and
  picks the oracle reference line (every one of conv2's 2^20 removals: minutes). Both keep running while
  the class works (the last column says whether they still were at the end).
- the class: N contexts open the same link at once, Live toggles of the shipped digits model
  (``toggle?model=lenet5_digits.pt&layer=conv2``). First load = navigation until the accuracy metric shows
  a value; usable = all 20 switches drawn and the run over. Then each context clicks T switches, its own
  units (context i: units 3i, 3i+1, ...), one after the other; toggle = click until "Units off" shows the
  new count (the accuracy metric is drawn before it in the same run). Every accuracy shown is checked,
  after the run, against ``core.evaluate`` of that context's mask (column wrong).

Policies: before = ``NRE_COMPUTE_POLICY=off`` (torch's default threads, one per core, no slots, no
priorities, no nice); after = the shipped policy. Runs are interleaved (before, after, before, after, ...)
so the machine's other load hits both. Server side: the class sessions' script runs from the server's log
(first load: first run's start to the end of the last full run; toggle: each fragment rerun), and the CPU
seconds the server and the browsers used during the class (from /proc, via psutil), so a reader can see
how much of a browser-side number is the browsers sharing the cores with the server.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.browser import CHROMIUM, FLAGS, IDLE_JS, streamlit_server  # noqa: E402

LAYER, UNITS = "conv2", 20
LINK = f"model=lenet5_digits.pt&layer={LAYER}"
METRICS_JS = """() => Object.fromEntries([...document.querySelectorAll('[data-testid="stMetric"]')].map(b => [
    b.querySelector('[data-testid="stMetricLabel"]').innerText.trim(),
    b.querySelector('[data-testid="stMetricValue"]').innerText.trim()]))"""
ACCURACY_SHOWN_JS = """() => [...document.querySelectorAll('[data-testid="stMetric"]')].some(b =>
    b.querySelector('[data-testid="stMetricLabel"]').innerText.startsWith('Accuracy')
    && b.querySelector('[data-testid="stMetricValue"]').innerText.includes('%'))"""
SWITCHES_JS = f"document.querySelectorAll('[data-testid=\"stCheckbox\"] p').length >= {UNITS}"
WAIT = 240_000  # ms: a page under load may take long; a timeout is reported, not hidden


async def wait_idle(page) -> None:
    """As tests/browser.wait_idle: until the script run (and any rerun it triggers) is over."""
    await page.wait_for_timeout(400)
    await page.wait_for_function(IDLE_JS, timeout=WAIT)
    await page.wait_for_timeout(300)
    await page.wait_for_function(IDLE_JS, timeout=WAIT)


async def metrics(page) -> dict[str, str]:
    return await page.evaluate(METRICS_JS)


def accuracy(shown: dict[str, str]) -> str:
    return next(value for label, value in shown.items() if label.startswith("Accuracy"))


async def student(context, url: str, units: list[int], out: dict) -> None:
    """One student: open the link, then click ``units``' switches one by one."""
    page = await context.new_page()
    began = time.perf_counter()
    await page.goto(f"{url}/toggle?{LINK}", timeout=WAIT)
    await page.wait_for_function(ACCURACY_SHOWN_JS, timeout=WAIT)
    out["load"].append(time.perf_counter() - began)
    await page.wait_for_function(SWITCHES_JS, timeout=WAIT)
    await wait_idle(page)
    out["usable"].append(time.perf_counter() - began)
    out["shown"].append(([], accuracy(await metrics(page))))
    off: set[int] = set()
    for unit in units:
        off ^= {unit}
        expected = f"{len(off)} / {UNITS}"
        box = page.locator("[data-testid='stCheckbox']").filter(
            has=page.get_by_role("switch", name=str(unit), exact=True))
        start = time.perf_counter()
        await box.click(timeout=WAIT)
        await page.wait_for_function(f"""() => [...document.querySelectorAll('[data-testid="stMetric"]')].some(b =>
            b.innerText.startsWith('Units off') && b.querySelector('[data-testid="stMetricValue"]').innerText.trim()
            === {expected!r})""", timeout=WAIT)
        out["toggle"].append(time.perf_counter() - start)
        out["shown"].append((sorted(off), accuracy(await metrics(page))))
        await wait_idle(page)  # the student reads the result (the charts finish) before the next click


async def start_finetune(browser, url: str):
    """The Compress page's fine-tune (recipe paper-b, 200 epochs), started; returns the page."""
    page = await (await browser.new_context()).new_page()
    await page.goto(f"{url}/compress?{LINK}", timeout=WAIT)
    await page.get_by_text("Start fine-tuning").wait_for(timeout=WAIT)
    await wait_idle(page)
    recipe = page.get_by_role("combobox", name="Recipe", exact=True)
    for _ in range(5):  # a click during a repaint can be lost (as tests/test_browser.choose)
        await recipe.click()
        await page.wait_for_timeout(500)
        await recipe.fill("paper-b")  # the combobox filters as one types; Enter picks the one left
        try:
            await page.get_by_role("option", name="paper-b", exact=True).wait_for(timeout=5_000)
            break
        except Exception:  # noqa: BLE001  (playwright's TimeoutError) try again
            await page.keyboard.press("Escape")
    await recipe.press("Enter")
    await wait_idle(page)
    assert await recipe.input_value() == "paper-b"
    epochs = page.get_by_label("Epochs")
    await epochs.fill("200")
    await epochs.press("Enter")
    await wait_idle(page)
    await page.get_by_role("button", name="Start fine-tuning").click()
    await page.get_by_text("Fine-tuning: iteration").first.wait_for(timeout=WAIT)
    return page


async def start_curves(browser, url: str):
    """Pruning curves on conv2 with 30 random seeds and the oracle reference line, started; returns the page."""
    page = await (await browser.new_context()).new_page()
    await page.goto(f"{url}/curves?{LINK}", timeout=WAIT)
    await page.locator("[data-testid='stPlotlyChart']").first.wait_for(timeout=WAIT)
    await wait_idle(page)
    slider = page.get_by_role("slider").first
    await slider.focus()
    await slider.press("End")  # the most seeds the page offers (30)
    await wait_idle(page)
    await page.get_by_text("oracle: best of all removals").click()
    await page.get_by_text("oracle reference").first.wait_for(timeout=WAIT)  # its progress bar: running
    return page


async def still_running(finetune, curves) -> bool:
    return (await finetune.get_by_text("Fine-tuning: iteration").count() > 0
            and await curves.get_by_text("oracle reference").count() > 0)


def cpu_seconds(pids: set[int]) -> dict[int, float]:
    seconds = {}
    for pid in pids:
        try:
            times = psutil.Process(pid).cpu_times()
            seconds[pid] = times.user + times.system
        except psutil.Error:
            pass
    return seconds


def descendants() -> set[int]:
    return {p.pid for p in psutil.Process().children(recursive=True)}


def server_side(log: Path, since: float) -> dict:
    """The class sessions' script runs (sessions whose first run started at ``since`` or later)."""
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    pid = next(line["pid"] for line in lines if "pid" in line)
    runs = [line for line in lines if "session" in line]
    first = {}
    for run in runs:
        first.setdefault(run["session"], run["start"])
    class_ = {s for s, t in first.items() if t >= since}
    loads, toggles = [], []
    for session in class_:
        mine = [r for r in runs if r["session"] == session]
        full = [r for r in mine if not r["fragment"]]
        loads.append(max(r["start"] + r["seconds"] for r in full) - first[session])
        toggles += [r["seconds"] for r in mine if r["fragment"] and not r["auto"]]
    return {"pid": pid, "load": loads, "toggle": toggles}


async def one_run(browser, n: int, toggles: int, policy: str, busy: bool) -> dict:
    out = {"load": [], "usable": [], "toggle": [], "shown": [], "errors": []}
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "NRE_COMPUTE_POLICY", "NRE_THREADS")}
    env["NRE_COMPUTE_POLICY"] = "off" if policy == "before" else "on"
    log = Path(tempfile.mkstemp(prefix="nre-runs-", suffix=".jsonl")[1])
    env["NRE_RUN_LOG"] = str(log)
    with streamlit_server(env, [sys.executable, str(ROOT / "benchmarks" / "classroom_server.py")]) as url:
        teacher = await (await browser.new_context()).new_page()
        await teacher.goto(f"{url}/?{LINK}", timeout=WAIT)
        await teacher.locator("[data-testid='stMain'] h1").first.wait_for(timeout=WAIT)
        await wait_idle(teacher)
        load = [await start_finetune(browser, url), await start_curves(browser, url)] if busy else []
        contexts = [await browser.new_context() for _ in range(n)]
        before_cpu = cpu_seconds(descendants())
        since = time.time()
        results = await asyncio.gather(*[student(c, url, [(3 * i + k) % UNITS for k in range(toggles)], out)
                                         for i, c in enumerate(contexts)], return_exceptions=True)
        out["errors"] = [f"{type(r).__name__}: {str(r).splitlines()[0]}" for r in results if isinstance(r, Exception)]
        after_cpu = cpu_seconds(descendants())
        out["loadavg"] = os.getloadavg()[0]
        out["running"] = await still_running(*load) if busy else None
        server = server_side(log, since)
        tree = {server["pid"], *(p.pid for p in psutil.Process(server["pid"]).children(recursive=True))}
        used = {pid: after_cpu[pid] - before_cpu.get(pid, 0.0) for pid in after_cpu}
        out["cpu"] = (sum(v for p, v in used.items() if p in tree), sum(v for p, v in used.items() if p not in tree),
                      time.time() - since)
        out["server"] = server
        for context in [*contexts, teacher.context, *(page.context for page in load)]:
            await context.close()
    log.unlink()
    return out


def wrong(shown: list[tuple[list[int], str]]) -> int:
    """Shown accuracies that differ from ``core.evaluate`` of the same mask (computed after the runs)."""
    import core

    model, test = core.load_model(), core.load_dataset("digits", "test")
    truth: dict[tuple, str] = {}
    count = 0
    for off, text in shown:
        if tuple(off) not in truth:
            truth[tuple(off)] = f"{core.evaluate(model, test, off={LAYER: off}).accuracy:.2%}"
        count += text != truth[tuple(off)]
    return count


def pct(values, q) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def row(n: int, busy: bool, policy: str, r: dict) -> str:
    s = r["server"]
    server_cpu, browser_cpu, seconds = r["cpu"]
    running = "—" if r["running"] is None else ("yes" if r["running"] else "no")
    errors = f" ({len(r['errors'])} failed: {r['errors'][0]})" if r["errors"] else ""
    return (f"| {n} | {'fine-tune + curves' if busy else 'idle'} | {policy} | {pct(r['load'], 50):.1f} / "
            f"{max(r['load'], default=float('nan')):.1f} | {pct(r['usable'], 50):.1f} / "
            f"{max(r['usable'], default=float('nan')):.1f} | {pct(r['toggle'], 50):.2f} | {pct(r['toggle'], 95):.2f} | "
            f"{wrong(r['shown'])} / {len(r['shown'])}{errors} | {pct(s['load'], 50):.1f} / "
            f"{max(s['load'], default=float('nan')):.1f} | {pct(s['toggle'], 50):.2f} / {pct(s['toggle'], 95):.2f} | "
            f"{server_cpu:.0f} / {browser_cpu:.0f} of {psutil.cpu_count() * seconds:.0f} | {r['loadavg']:.1f} | {running} |")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--toggles", type=int, default=5, help="clicks per context")
    parser.add_argument("--repeats", type=int, default=1, help="before/after pairs per (sessions, load)")
    parser.add_argument("--busy-only", action="store_true")
    args = parser.parse_args()
    from playwright.async_api import async_playwright

    print(f"{psutil.cpu_count()} cores; load average at the start {os.getloadavg()[0]:.1f}\n")
    print("| sessions | load | policy | first load p50 / max (s) | usable p50 / max (s) | toggle p50 (s) | "
          "toggle p95 (s) | wrong / shown | server: first load p50 / max (s) | server: toggle p50 / p95 (s) | "
          "CPU s server / browsers of available | load avg | load ran throughout |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        for n in args.sessions:
            for busy in ([True] if args.busy_only else [False, True]):
                for _ in range(args.repeats):
                    for policy in ("before", "after"):
                        r = await one_run(browser, n, args.toggles, policy, busy)
                        print(row(n, busy, policy, r), flush=True)
        await browser.close()
    print(f"\nload average at the end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    asyncio.run(main())
