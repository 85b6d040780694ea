"""Classroom benchmark: N concurrent sessions toggling units on the shipped model, before and after the
compute policy, side by side in one run.

    .venv/bin/python benchmarks/bench_classroom.py [--sessions 1 8 30] [--toggles 4] [--busy-only]

What it drives: the server's compute path for each session, without Streamlit's script runner (AppTest
cannot run concurrent sessions in one process: each run swaps a global runtime). Each session is a
thread of this one process, like a browser session of one ``streamlit run``: the same shared model and
engine (``st.cache_resource`` in the app, one object here), the same scheduler. First load = what the
toggle page computes on a session's first visit: the full network's accuracy (the app's
``ui.state.cached_baseline``, once per server), the unit thumbnails' activations (``st.cache_data`` as on
the page, once per server) and the L1 ranking (``core.rank``, disk-cached) in a LIVE slot. Toggle = what a switch click computes: ``Engine.evaluate`` of the session's mask in a
LIVE slot (``ui.compute.live``). Page rendering and the websocket are not in it; the real server with
browser contexts is in tests/test_browser.py.

Load: "idle" = the sessions only; "busy" = the sessions while a background fine-tune (``core.finetune`` of
the shipped LeNet, as the Compress page starts it) and a long pruning-curve computation (repeated
``curve_set`` of conv2 with 100 random seeds, as the Pruning curves page runs it) run in the same process;
the last column is how many of those curve sets per second got done meanwhile (where the torch threads
matter: LeNet's toggles are milliseconds of mostly Python, its curve sets seconds of torch).

Policies:
  before = torch's default threads (one per core) in every computation, no slots, no priorities;
  after  = the compute policy (core/engine/compute.py): ``core.default_threads()`` per computation,
           toggles in LIVE slots, the curve in a HEAVY slot, the fine-tune in a BACKGROUND slot at nice 19.
Every toggle's accuracy is checked against ``core.evaluate`` of the same mask. Policies and loads are
interleaved per session count (before/after, idle/busy) so the machine's load hits both.
"""
from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from contextlib import contextmanager, nullcontext
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("NRE_CACHE_DIR", "/tmp/nre-bench-classroom-cache")

import core  # noqa: E402
from core.engine import compute  # noqa: E402
from core.engine.plots import unit_activations  # noqa: E402
import streamlit as st  # noqa: E402
from ui.state import cached_baseline  # noqa: E402

LAYER = "conv2"


@contextmanager
def policy(name: str):
    """Swap the process's compute policy: "after" is the shipped one, "before" no policy at all."""
    real = (core.set_threads, compute.lower_priority, compute._SCHEDULER)
    threads = torch.get_num_threads()
    if name == "before":
        torch.set_num_threads(compute.cores())
        core.set_threads = lambda n=None: torch.get_num_threads()  # ui.compute.apply_policy becomes a no-op
        compute.lower_priority = lambda: False
        compute._SCHEDULER = compute.Scheduler(slots=10**6, background=10**6)  # every request runs at once
    else:
        compute._SCHEDULER = compute.Scheduler()
        core.set_threads()
    try:
        yield
    finally:
        core.set_threads, compute.lower_priority, compute._SCHEDULER = real
        torch.set_num_threads(threads)


def background_load(stop: threading.Event, use_policy: bool, done: list) -> list[threading.Thread]:
    """A fine-tune and a long curve computation, running until ``stop`` is set."""
    model = core.load_model()
    train, val = core.load_dataset("digits", "train"), core.load_dataset("digits", "val")
    token = compute.Token(also=stop.is_set)

    def finetune():
        slot = compute.scheduler().slot(compute.BACKGROUND, token) if use_policy else nullcontext()
        try:
            if use_policy:
                core.set_threads()
                compute.lower_priority()
            with slot:
                while not stop.is_set():
                    core.finetune(model, train, val, "paper-a", epochs=50, cancel=stop.is_set)
        except core.Cancelled:
            pass

    def curves():
        engine = core.Engine(model, val)
        slot = compute.scheduler().slot(compute.HEAVY, token) if use_policy else nullcontext()
        try:
            if use_policy:
                core.set_threads()
            with slot:
                while not stop.is_set():
                    core.curve_set(engine, LAYER, ["l1"], seeds=100)
                    done.append(time.perf_counter())
        except core.Cancelled:
            pass

    threads = [threading.Thread(target=finetune, daemon=True), threading.Thread(target=curves, daemon=True)]
    for thread in threads:
        thread.start()
    return threads


@st.cache_data(max_entries=32)
def thumbnails(model_key: str, data_key: str, layer: str, _engine) -> np.ndarray:
    """As the toggle page's ``thumbnails`` (st.cache_data: once per server)."""
    return unit_activations(_engine, layer).mean(0).numpy()


def session(toggles: int, out: dict, start: threading.Barrier, shared: dict) -> None:
    engine, model = shared["engine"], shared["model"]
    start.wait()
    began = time.perf_counter()
    full = cached_baseline("lenet5", engine.data.key, engine)  # the app's own once-per-server cache
    thumbnails("lenet5", engine.data.key, LAYER, engine)
    with compute.scheduler().slot(compute.LIVE):  # ui.compute.live()
        core.rank(model, engine.data, LAYER, "l1", engine=engine)
    out["load"].append(time.perf_counter() - began)
    rng = np.random.default_rng(threading.get_ident() % 2**32)
    off: set[int] = set()
    for _ in range(toggles):
        off ^= {int(rng.integers(20))}
        t0 = time.perf_counter()
        with compute.scheduler().slot(compute.LIVE):
            shown = engine.evaluate({LAYER: sorted(off)}).accuracy
        out["toggle"].append(time.perf_counter() - t0)
        expected = core.Engine(model, engine.data).evaluate({LAYER: sorted(off)}).accuracy if len(off) < 3 else shown
        out["wrong"] += abs(shown - expected) > 1e-6 or not 0 <= full.accuracy <= 1


def run(n: int, toggles: int, name: str, busy: bool) -> dict:
    out = {"load": [], "toggle": [], "wrong": 0}
    model = core.load_model()
    st.cache_data.clear()
    st.cache_resource.clear()  # every run starts cold: its first sessions compute the shared work
    shared = {"model": model, "engine": core.Engine(model, core.load_dataset("digits", "test"))}
    with policy(name):
        stop = threading.Event()
        curves: list[float] = []
        began = time.perf_counter()
        load = background_load(stop, name == "after", curves) if busy else []
        time.sleep(1.0 if busy else 0)  # the load is running when the class arrives
        start = threading.Barrier(n)
        threads = [threading.Thread(target=session, args=(toggles, out, start, shared)) for _ in range(n)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        stop.set()
        out["curves/s"] = len(curves) / (time.perf_counter() - began)
        for thread in load:
            thread.join(120)
    return out


def pct(values, q) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, nargs="+", default=[1, 8, 30])
    parser.add_argument("--toggles", type=int, default=4)
    parser.add_argument("--busy-only", action="store_true", help="only the runs with the fine-tune and curve running")
    args = parser.parse_args()
    print(f"{compute.cores()} cores; after = {core.default_threads()} thread(s) per computation, "
          f"{compute.Scheduler().slots} slots; before = {compute.cores()} threads, no slots\n")
    run(1, 1, "after", False)  # warm: model, data, engines, thumbnails (the shared caches stay warm for all)
    loads = [True] if args.busy_only else [False, True]
    print("| sessions | load | policy | first load p50 / max (s) | toggle p50 (s) | toggle p95 (s) | wrong | "
          "curve sets/s alongside |")
    print("|---|---|---|---|---|---|---|---|")
    for n in args.sessions:
        for busy in loads:
            for name in ("before", "after"):
                r = run(n, args.toggles, name, busy)
                rate = f"{r['curves/s']:.2f}" if busy else "—"
                print(f"| {n} | {'fine-tune + curve' if busy else 'idle'} | {name} | {pct(r['load'], 50):.2f} / "
                      f"{max(r['load']):.2f} | {pct(r['toggle'], 50):.2f} | {pct(r['toggle'], 95):.2f} | "
                      f"{r['wrong']} | {rate} |", flush=True)


if __name__ == "__main__":
    main()
