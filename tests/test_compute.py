"""The compute policy (core/engine/compute.py): thread settings applied and read back, slots with
priorities, "queued, N ahead", cancellation that frees the slot (issue 21, items 2 and 3)."""
from __future__ import annotations

import subprocess
import sys
import threading
import time

import pytest
import torch

import core
from core.engine.compute import BACKGROUND, HEAVY, LIVE, Cancelled, Scheduler, Token, default_threads, set_threads
from tests.conftest import ROOT


@pytest.fixture
def restore_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_set_threads_is_applied_and_read_back(restore_threads):
    assert set_threads(2) == 2 == torch.get_num_threads()
    assert set_threads(1) == 1 == torch.get_num_threads()
    seen = []
    thread = threading.Thread(target=lambda: seen.append(torch.get_num_threads()))
    thread.start()
    thread.join()
    assert seen == [1]  # a computation's thread (an app session's) runs with the policy too
    with pytest.raises(ValueError):
        set_threads(0)


def test_the_default_comes_from_nre_threads(monkeypatch, restore_threads):
    monkeypatch.setenv("NRE_THREADS", "3")
    assert default_threads() == 3
    assert set_threads() == 3 == torch.get_num_threads()
    monkeypatch.setenv("NRE_THREADS", "lots")
    with pytest.raises(ValueError, match="NRE_THREADS"):
        default_threads()
    monkeypatch.delenv("NRE_THREADS")
    assert 1 <= default_threads() <= 4


def run_python(code: str, env: dict) -> str:
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    return out.stdout.strip() + out.stderr.strip()


def test_import_core_applies_the_policy_and_the_cli_takes_threads():
    import os

    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "NRE_THREADS")}
    code = ("import sys, torch, core; print('imported', torch.get_num_threads()); from core.cli import main; "
            "from core.cli.common import COMMANDS; "
            "COMMANDS['info'] = (COMMANDS['info'][0], lambda a: print('threads', torch.get_num_threads()) or 0); "
            "sys.exit(main(['--threads', '3', 'info']))")
    out = run_python(code, {**env, "NRE_THREADS": "2"})
    assert "imported 2" in out and "threads 3" in out, out
    bad = subprocess.run([sys.executable, "-m", "core", "--threads", "0", "info"], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and bad.stderr.strip() == "error: threads must be at least 1 (got 0)"


def hold(scheduler: Scheduler, priority: int, release: threading.Event, started: threading.Event | None = None,
         token: Token | None = None):
    def run():
        with scheduler.slot(priority, token):
            if started:
                started.set()
            release.wait(10)
    thread = threading.Thread(target=run)
    thread.start()
    return thread


def test_heavy_work_leaves_a_slot_for_toggles_and_a_waiter_hears_how_many_are_ahead():
    scheduler = Scheduler(slots=2)
    release, started = threading.Event(), threading.Event()
    first = hold(scheduler, HEAVY, release, started)
    assert started.wait(5)
    heard: list[int] = []
    second_started = threading.Event()
    second = hold_with_waiting(scheduler, HEAVY, release, second_started, heard)
    time.sleep(0.3)
    assert not second_started.is_set() and heard and heard[0] >= 1  # heavy limit = slots - 1
    with scheduler.slot(LIVE) as slot:  # a toggle still gets a core at once
        assert slot.held and scheduler.running(LIVE) == 1
    release.set()
    first.join(5)
    second.join(5)
    assert second_started.is_set()
    assert scheduler.running() == 0


def hold_with_waiting(scheduler, priority, release, started, heard):
    def run():
        with scheduler.slot(priority, waiting=heard.append):
            started.set()
            release.wait(10)
    thread = threading.Thread(target=run)
    thread.start()
    return thread


def test_toggles_are_served_before_heavy_work_that_waited_longer():
    scheduler = Scheduler(slots=1)
    release = threading.Event()
    started = threading.Event()
    holder = hold(scheduler, LIVE, release, started)
    assert started.wait(5)
    order: list[str] = []

    def take(priority, name):
        with scheduler.slot(priority):
            order.append(name)

    heavy = threading.Thread(target=take, args=(HEAVY, "heavy"))
    heavy.start()
    time.sleep(0.2)
    live = threading.Thread(target=take, args=(LIVE, "live"))
    live.start()
    time.sleep(0.2)
    release.set()
    for thread in (holder, heavy, live):
        thread.join(5)
    assert order == ["live", "heavy"]


def test_background_jobs_are_bounded_and_take_no_slot():
    scheduler = Scheduler(slots=2, background=1)
    release, started = threading.Event(), threading.Event()
    job = hold(scheduler, BACKGROUND, release, started)
    assert started.wait(5)
    second_started = threading.Event()
    second = hold(scheduler, BACKGROUND, release, second_started)
    time.sleep(0.3)
    assert not second_started.is_set()  # the second fine-tune queues
    with scheduler.slot(HEAVY), scheduler.slot(LIVE):  # both compute slots stay free for sessions
        assert scheduler.running(HEAVY) == scheduler.running(LIVE) == 1
    release.set()
    job.join(5)
    second.join(5)
    assert second_started.is_set()


def test_a_cancelled_waiter_leaves_the_queue():
    scheduler = Scheduler(slots=1)
    release, started = threading.Event(), threading.Event()
    holder = hold(scheduler, LIVE, release, started)
    assert started.wait(5)
    token = Token()
    threading.Timer(0.2, token.cancel).start()
    with pytest.raises(Cancelled):
        with scheduler.slot(HEAVY, token):
            pass
    assert scheduler.waiting() == 0
    release.set()
    holder.join(5)


def test_a_cancelled_shapley_stops_within_a_report_and_frees_its_slot(model, digits_val):
    """A long computation (exact Shapley of conv2 would be 2^20 coalitions) stops at its next progress
    report once its token is cancelled, and its slot is free again at once."""
    scheduler = Scheduler(slots=2)
    token = Token()
    engine = core.Engine(model, digits_val)
    reports: list[int] = []
    outcome: list[object] = []

    def work():
        try:
            with scheduler.slot(HEAVY, token) as slot:
                core.rank(model, digits_val, "conv2", "shapley", estimator="exact", engine=engine, cache=False,
                          progress=token.progress(lambda d, t: reports.append(d), slot))
            outcome.append("finished")
        except Cancelled:
            outcome.append("cancelled")

    thread = threading.Thread(target=work)
    thread.start()
    deadline = time.monotonic() + 60
    while not reports and time.monotonic() < deadline:
        time.sleep(0.05)
    assert reports, "no progress report"
    cancelled_at = time.monotonic()
    token.cancel()
    thread.join(30)
    assert outcome == ["cancelled"]
    assert time.monotonic() - cancelled_at < 5
    assert scheduler.running() == 0


def test_a_superseding_token_condition_cancels():
    """``Token(also=...)``: e.g. "this session has started a newer run" or "the session is closed"."""
    generation = {"now": 1}
    token = Token(also=lambda: generation["now"] != 1)
    token.check()
    generation["now"] = 2
    with pytest.raises(Cancelled):
        token.progress()(1, 2)


def test_a_heavy_slot_steps_aside_for_a_waiting_toggle():
    scheduler = Scheduler(slots=1)
    token = Token()
    got_live = threading.Event()
    with scheduler.slot(HEAVY, token) as slot:
        live_done = threading.Event()

        def toggle():
            with scheduler.slot(LIVE):
                got_live.set()
            live_done.set()

        waiter = threading.Thread(target=toggle)
        waiter.start()
        time.sleep(0.2)
        assert not got_live.is_set()
        token.progress(None, slot)(1, 10)  # the heavy work's next progress report
        assert got_live.wait(2) and slot.held
        waiter.join(5)
    assert live_done.is_set() and scheduler.running() == 0


def test_stepping_aside_is_bounded_when_the_toggle_waits_for_a_lock_the_heavy_work_holds():
    """A toggle waiting for something the heavy thread holds (a prefix cache being filled) cannot make the
    heavy work wait for it forever: it takes its slot back after its patience, finishes, and the toggle runs."""
    scheduler = Scheduler(slots=1)
    prefix_lock = threading.Lock()
    toggled = threading.Event()

    def toggle():
        with scheduler.slot(LIVE), prefix_lock:
            toggled.set()

    with scheduler.slot(HEAVY, Token()) as slot, prefix_lock:
        toggler = threading.Thread(target=toggle)
        toggler.start()
        time.sleep(0.2)
        started = time.monotonic()
        slot.yield_to_live(patience=0.5)
        assert time.monotonic() - started < 3 and slot.held
    toggler.join(5)
    assert toggled.is_set() and scheduler.running() == 0


def test_the_policy_can_be_switched_off_for_the_before_side_of_the_benchmarks(monkeypatch, restore_threads):
    """NRE_COMPUTE_POLICY=off (benchmarks/bench_classroom_browser.py's "before"): torch's default threads, one per
    core, whatever NRE_THREADS says; a scheduler that never queues; no lowered CPU priority."""
    from core.engine import compute

    monkeypatch.setattr(compute, "_SCHEDULER", None)
    monkeypatch.setenv("NRE_THREADS", "1")
    monkeypatch.setenv("NRE_COMPUTE_POLICY", "off")
    assert not compute.policy_on()
    assert default_threads() == compute.cores()
    assert set_threads() == compute.cores() == torch.get_num_threads()
    assert compute.lower_priority() is False  # returns before touching the thread's nice value
    off = compute.scheduler()
    assert off.slots == off.background_limit == compute.UNLIMITED
    release, holders = threading.Event(), []
    for priority in (HEAVY, HEAVY, HEAVY, BACKGROUND, BACKGROUND):  # more than the cores: all run at once
        started = threading.Event()
        holders.append(hold(off, priority, release, started))
        assert started.wait(5), "a request waited with the policy off"
    release.set()
    for thread in holders:
        thread.join(5)
    monkeypatch.setenv("NRE_COMPUTE_POLICY", "On ")  # case and spaces do not matter; on is the default
    monkeypatch.setattr(compute, "_SCHEDULER", None)
    assert compute.policy_on() and default_threads() == 1 and compute.scheduler().slots == compute.cores()
    monkeypatch.setenv("NRE_COMPUTE_POLICY", "maybe")
    with pytest.raises(ValueError, match="NRE_COMPUTE_POLICY must be 'on' or 'off'"):
        default_threads()


def test_a_server_started_with_the_policy_off_runs_torch_default_threads():
    import os

    from core.engine.compute import UNLIMITED, cores

    code = ("import torch, core, ui.compute; print('threads', ui.compute.apply_policy(), torch.get_num_threads(), "
            "'slots', core.scheduler().slots)")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "NRE_THREADS": "1"}  # both overridden by the switch
    out = run_python(code, {**env, "NRE_COMPUTE_POLICY": "off"})
    assert f"threads {cores()} {cores()} slots {UNLIMITED}" in out, out
    out = run_python(code, env)
    assert f"threads 1 1 slots {cores()}" in out, out
