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

from contextlib import contextmanager
from typing import Callable, Iterator

import streamlit as st

import core
from core.engine.compute import BACKGROUND, HEAVY, LIVE, Cancelled, Slot, Token, scheduler

Progress = Callable[[int, int], None]


def apply_policy() -> int:
    """Torch threads per computation for this server (``$NRE_THREADS``, else one per four cores)."""
    return core.set_threads()


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


@contextmanager
def heavy(what: str) -> Iterator[Work]:
    """Hold a heavy-work slot for the block; says "Queued: N ahead of you" while it waits."""
    box = st.empty()
    gone = session_alive_check()
    token = Token(also=lambda: not gone())
    with scheduler().slot(HEAVY, token, waiting=_queued_message(box, what)) as slot:
        box.empty()
        yield Work(slot, token)


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


__all__ = ["apply_policy", "heavy", "live", "background", "session_alive_check", "Work", "Cancelled"]
