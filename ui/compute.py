"""The compute policy in the app (``core.engine.compute``): every session's work shares one scheduler.

- ``apply_policy()`` (explorer.py, each run): torch on ``core.default_threads()`` threads per computation.
- ``live()``: a toggle's evaluation holds a LIVE slot (a core is always left for toggles).
- ``heavy(what)``: rankings, curves, AM, Shapley by hand hold a HEAVY slot; while queued the page says
  "Queued: N ahead of you"; ``work.progress(callback)`` is the progress callback to hand the computation:
  it stops the work (``core.Cancelled``) when this session is closed, and lets waiting toggles go first.
  Stop and a rerun that supersedes the work stop it too: Streamlit raises in the script thread at the
  callback's next ``st`` call (the progress bar), and the slot is freed on the way out.
- ``session_alive()``: whether this browser session is still connected (background jobs poll it).
"""
from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Callable, Iterator

import streamlit as st

import core
from core.engine.compute import BACKGROUND, HEAVY, LIVE, Cancelled, Slot, Token, scheduler

Progress = Callable[[int, int], None]


def apply_policy() -> int:
    """Torch threads per computation for this server (``$NRE_THREADS``, else one per four cores). A bad
    ``NRE_THREADS`` / ``NRE_COMPUTE_POLICY`` stops the page with one line saying what to fix (the server's
    environment, so every page would fail the same way)."""
    try:
        return core.set_threads()
    except ValueError as error:
        st.error(f"This server is misconfigured: {error}. Fix the environment variable and restart "
                 "the app.", icon=":material/error:")
        st.stop()


def session_alive_check() -> Callable[[], bool]:
    """A function telling whether the browser session running now is still connected (True outside a server)."""
    from streamlit.runtime import Runtime, exists
    from streamlit.runtime.scriptrunner import get_script_run_ctx

    ctx = get_script_run_ctx()
    if ctx is None or not exists():
        return lambda: True
    runtime, session = Runtime.instance(), ctx.session_id
    return lambda: runtime.is_active_session(session)


class Work:
    """A held slot and its cancellation token, for one computation of this session."""

    def __init__(self, slot: Slot, token: Token):
        self.slot, self.token = slot, token

    def progress(self, callback: Progress | None = None) -> Progress:
        return self.token.progress(callback, self.slot)


def _queued_message(box, what: str) -> Callable[[int], None]:
    def show(ahead: int) -> None:
        if ahead:
            box.info(f"Queued: {ahead} ahead of you — {what} starts when a core is free "
                     f"(the server shares its {scheduler().slots} cores between everyone's work).",
                     icon=":material/hourglass_top:")
    return show


def superseded_check() -> Callable[[], bool]:
    """A function telling whether this script run has been stopped (Stop) or superseded by a rerun that
    preempts it. Streamlit would raise at the next ``st`` call anyway; this lets the engine's own
    checkpoints stop work that makes no ``st`` call for a while. False outside a server."""
    from streamlit.runtime.scriptrunner import get_script_run_ctx

    ctx = get_script_run_ctx()
    requests = getattr(ctx, "script_requests", None)
    if requests is None:
        return lambda: False

    def superseded() -> bool:
        try:  # Streamlit's request state (private): STOP, or a RERUN that would preempt this run
            from streamlit.runtime.scriptrunner_utils.script_requests import (
                ScriptRequestType, _fragment_run_should_not_preempt_script)
            state = requests._state
            if state == ScriptRequestType.STOP:
                return True
            data = requests._rerun_data
            return state == ScriptRequestType.RERUN and not _fragment_run_should_not_preempt_script(
                data.fragment_id_queue, data.is_fragment_scoped_rerun)
        except (ImportError, AttributeError):
            return False
    return superseded


@contextmanager
def heavy(what: str) -> Iterator[Work]:
    """Hold a heavy-work slot for the block; says "Queued: N ahead of you" while it waits, then a line
    "what: working… N s" from the first second (updated at the engine's checkpoints, at most twice a second)."""
    box = st.empty()
    gone, superseded = session_alive_check(), superseded_check()
    token = Token(also=lambda: superseded() or not gone())
    with scheduler().slot(HEAVY, token, waiting=_queued_message(box, what)) as slot:
        start, shown = time.monotonic(), [0.0]

        def tick(count: int) -> None:
            now = time.monotonic()
            if now - shown[0] >= 0.5:
                shown[0] = now
                box.caption(f"{what}: working… {now - start:.0f} s ({count:,} steps)")
        box.caption(f"{what}: working…")
        slot.on_tick = tick
        try:
            yield Work(slot, token)
        finally:
            slot.on_tick = None
            box.empty()


@contextmanager
def live() -> Iterator[Slot]:
    """Hold a live (toggle) slot for the block."""
    box = st.empty()
    with scheduler().slot(LIVE, waiting=_queued_message(box, "your toggle")) as slot:
        box.empty()
        yield slot


@contextmanager
def background(token: Token, waiting: Callable[[int], None] | None = None) -> Iterator[Slot]:
    """A background job's slot (fine-tuning), from its own thread: lowest CPU priority, bounded in number."""
    core.set_threads()
    core.engine.compute.lower_priority()
    with scheduler().slot(BACKGROUND, token, waiting=waiting) as slot:
        yield slot


AM_STEPS = 256  # AM's default optimization steps on our staged models (seconds)
GENERIC_AM_STEPS = 16  # a torchvision model at 224x224: ResNet-18 conv1's 64 images took 332 s for 32 steps on one
# thread of this 2-core machine at load average 12-14 (the page's minimum; more on request)


def default_am_steps(chosen) -> int:
    """The AM step count a page offers first: fewer on a torchvision model, whose images are 224x224."""
    return AM_STEPS if core.network.models.is_staged(chosen.model) else GENERIC_AM_STEPS


__all__ = ["default_am_steps", "apply_policy", "heavy", "live", "background", "session_alive_check", "Work", "Cancelled"]
