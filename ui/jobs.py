"""Background jobs for long work (fine-tuning): one thread per job, kept in the browser session.

A job lives in ``st.session_state``, so it survives page switches; the thread never calls
Streamlit, it only updates its Job (progress, latest stats, result) which the page reads on each
rerun. Cancel sets an event that the work polls (``core.finetune(cancel=...)``); a cancelled job
writes nothing. A job runs under the compute policy (``ui.compute.background``): at most one at a time
per server, the others wait ("queued, N ahead"), on few threads at the lowest CPU priority; a job whose
browser session has closed is cancelled. Finished results are kept per session under the job's parameters, so asking
again for the same thing shows the result at once.
"""
from __future__ import annotations

import threading
import time
import traceback
from dataclasses import dataclass, field
from typing import Any, Callable

import streamlit as st

import core
from core.engine.compute import Token
from ui.compute import background, session_alive_check

Work = Callable[["Job"], Any]  # runs in the thread; reports through job.report, polls job.cancelled


@dataclass
class Job:
    name: str
    key: tuple  # the parameters: equal keys mean the same result
    status: str = "running"  # running, done, cancelled, failed
    done: int = 0
    total: int = 0
    stats: dict = field(default_factory=dict)
    history: list = field(default_factory=list)
    result: Any = None
    error: str | None = None
    queued_ahead: int = 0  # while waiting for a background slot (the compute policy): jobs ahead of this one
    started: float = field(default_factory=time.time)
    finished: float | None = None
    _cancel: threading.Event = field(default_factory=threading.Event, repr=False)
    _thread: threading.Thread | None = field(default=None, repr=False)
    _session_alive: Callable[[], bool] = field(default=lambda: True, repr=False)

    @property
    def running(self) -> bool:
        return self.status == "running"

    @property
    def fraction(self) -> float:
        return min(1.0, self.done / self.total) if self.total else 0.0

    def cancelled(self) -> bool:
        """Cancel was pressed, or the browser session that started the job is gone (nobody will read it)."""
        if not self._cancel.is_set() and not self._session_alive():
            self._cancel.set()
        return self._cancel.is_set()

    def cancel(self) -> None:
        self._cancel.set()

    def report(self, done: int, total: int, stats: dict | None = None) -> None:
        self.done, self.total = done, total
        if stats:
            self.stats = dict(stats)
            self.history.append(dict(stats))

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the thread ends (tests); True if it did."""
        if self._thread is not None:
            self._thread.join(timeout)
        return not self.running


def _jobs() -> dict[str, Job]:
    return st.session_state.setdefault("_jobs", {})


def _results() -> dict[tuple, Any]:
    return st.session_state.setdefault("_job_results", {})


def get_job(name: str) -> Job | None:
    return _jobs().get(name)


def cached_result(key: tuple) -> Any:
    return _results().get(key)


def start_job(name: str, key: tuple, work: Work) -> Job:
    """Run ``work(job)`` in a thread under ``name`` (one job per name and session; a running one is
    cancelled first). A result already computed for ``key`` in this session is reused at once."""
    old = get_job(name)
    if old is not None and old.running:
        old.cancel()
    job = Job(name, key, _session_alive=session_alive_check())
    if key in _results():
        job.result, job.status, job.finished = _results()[key], "done", time.time()
        job.stats = {"cached": True}
        _jobs()[name] = job
        return job
    results = _results()

    def run() -> None:
        try:
            token = Token(also=job.cancelled)
            # the compute policy: few threads, the lowest CPU priority, a bounded number of jobs at once
            with background(token, waiting=lambda ahead: setattr(job, "queued_ahead", ahead)):
                job.queued_ahead = 0
                job.result = work(job)
            job.status = "done"
            results[key] = job.result
        except core.Cancelled:
            job.status = "cancelled"
        except Exception as exc:  # shown on the page; details in the server log
            traceback.print_exc()
            job.error, job.status = f"{type(exc).__name__}: {exc}" if not isinstance(exc, ValueError) else str(exc), \
                "failed"
        finally:
            job.finished = time.time()

    job._thread = threading.Thread(target=run, name=f"job:{name}", daemon=True)
    _jobs()[name] = job
    job._thread.start()
    return job
