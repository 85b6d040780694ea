"""How computations share the cores: torch threads, compute slots with priorities, cancellation.

The policy (README, "Sharing one machine"):

- **Threads.** Every computation runs on few intra-op threads (default ``default_threads()``: one per
  four cores, at least 1, at most 4; ``NRE_THREADS`` or ``set_threads`` overrides). On a busy machine
  torch's default (one thread per core, for every concurrent computation) oversubscribes the cores and
  makes everything 20-50x slower.
- **Slots.** A ``Scheduler`` holds one slot per core (``slots``). A computation asks for a slot with a
  priority: ``LIVE`` (a toggle: short, may use every slot), ``HEAVY`` (rankings, curves, AM: at most
  ``slots - 1`` at once, so a core is always left for toggles) or ``BACKGROUND`` (fine-tuning: at most
  ``background`` at once, its thread niced to the lowest CPU priority, holding no slot). Waiters are
  served by priority, then in order of arrival; a waiter is told how many are ahead of it.
- **Cancellation.** A ``Token`` is cancelled by whoever owns the work (Stop, a superseding rerun, a
  closed session); ``Token.check`` raises ``Cancelled``. Long computations call their ``progress``
  callback often; ``Token.progress(callback)`` wraps one so that the computation stops at its next
  report, and a heavy slot's ``yield_to_live`` (called from the same callback) lets a waiting toggle
  run first. Work without a progress callback is stopped too: ``checkpoint()``, called by the engine
  for every batch it runs and by AM for every step, checks the token of the slot the thread holds.
- **Switched off** (``NRE_COMPUTE_POLICY=off``, for measuring what the policy buys: the classroom benchmarks'
  "before"): torch's default threads (one per core) in every computation, no slots or priorities (every
  request runs at once), no lowered CPU priority. Cancellation still works.
"""
from __future__ import annotations

import os
import threading
import time
from contextlib import contextmanager
from typing import Callable, Iterator

import torch

LIVE, HEAVY, BACKGROUND = 0, 1, 2
PRIORITY_NAMES = {LIVE: "live", HEAVY: "heavy", BACKGROUND: "background"}
THREADS_ENV = "NRE_THREADS"
POLICY_ENV = "NRE_COMPUTE_POLICY"
UNLIMITED = 10**6  # slots of the scheduler with the policy off: every request runs at once
Progress = Callable[[int, int], None]


class Cancelled(Exception):
    """The work was cancelled (Stop, a superseding rerun, a closed session); nothing was returned or written."""


def cores() -> int:
    """CPU cores this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def policy_on() -> bool:
    """Whether the compute policy is in force: ``$NRE_COMPUTE_POLICY`` is ``on`` (the default) or ``off``
    (torch's default threads, no slots, no priorities: the app as it was before the policy, for benchmarks)."""
    value = os.environ.get(POLICY_ENV, "").strip().lower() or "on"
    if value not in ("on", "off"):
        raise ValueError(f"{POLICY_ENV} must be 'on' or 'off' (got {value!r})")
    return value == "on"


def default_threads() -> int:
    """Intra-op threads per computation: ``$NRE_THREADS`` when set, else one per four cores (1 to 4); with
    the policy off (``NRE_COMPUTE_POLICY=off``) torch's own default, one per core, whatever ``NRE_THREADS`` says."""
    if not policy_on():
        return cores()
    value = os.environ.get(THREADS_ENV, "").strip()
    if value:
        threads = int(value) if value.isdigit() else 0
        if threads < 1:
            raise ValueError(f"{THREADS_ENV} must be a whole number of threads >= 1 (got {value!r})")
        return threads
    return max(1, min(4, cores() // 4))


def set_threads(threads: int | None = None) -> int:
    """Set torch's intra-op threads for this process (and the calling thread) to ``threads`` (default
    ``default_threads()``); returns the number now in effect (``torch.get_num_threads()``)."""
    threads = default_threads() if threads is None else int(threads)
    if threads < 1:
        raise ValueError(f"threads must be at least 1 (got {threads})")
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    return torch.get_num_threads()


def lower_priority() -> bool:
    """Give the calling thread the lowest CPU priority (Linux: the thread's nice value 19); False where the
    system does not allow it, or with the policy off. Only for threads that end with their work (the nice value
    cannot be raised back)."""
    if not policy_on():
        return False
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)
        return True
    except (AttributeError, OSError):
        return False


class Token:
    """A cancellation flag shared by the work and whoever may stop it; ``also`` adds more conditions
    (e.g. "the browser session is gone"), polled at each check."""

    def __init__(self, also: Callable[[], bool] | None = None):
        self._event = threading.Event()
        self._also = also

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        if not self._event.is_set() and self._also is not None and self._also():
            self._event.set()
        return self._event.is_set()

    def check(self) -> None:
        """Raise ``Cancelled`` when the work should stop."""
        if self.cancelled:
            raise Cancelled("cancelled")

    def progress(self, callback: Progress | None = None, slot: "Slot | None" = None) -> Progress:
        """A progress callback that stops the work (``Cancelled``) once this token is cancelled, lets a
        waiting toggle go first (``slot.yield_to_live``), then forwards to ``callback``."""
        def report(done: int, total: int) -> None:
            self.check()
            if slot is not None:
                slot.yield_to_live()
                self.check()
            if callback is not None:
                callback(done, total)
        return report


class Slot:
    """A held compute slot (from ``Scheduler.slot``)."""

    def __init__(self, scheduler: "Scheduler", priority: int, token: Token | None):
        self.scheduler, self.priority, self.token = scheduler, priority, token
        self.held = False
        self.ticks = 0  # checkpoints passed (engine batches, AM steps): a heartbeat for work without progress
        self.on_tick: Callable[[int], None] | None = None  # e.g. the app's "working… 12 s" line

    def yield_to_live(self, patience: float = 2.0) -> None:
        """A heavy slot with a toggle waiting for a core: step aside until the toggles waiting are served, for
        at most ``patience`` seconds (then take the slot back anyway: a toggle may be waiting for a lock this
        thread holds, e.g. a prefix cache being filled, so waiting longer could deadlock)."""
        if not getattr(_CURRENT, "holding", 0) and self.held and self.priority == HEAVY and self.scheduler.live_waiting():
            self.scheduler._step_aside(self, patience)


class Scheduler:
    """Compute slots shared by every session of a server (see the module docstring for the policy)."""

    def __init__(self, slots: int | None = None, background: int = 1, poll: float = 0.1):
        self.slots = max(1, slots if slots is not None else cores())
        self.heavy_limit = max(1, self.slots - 1)
        self.background_limit = max(1, background)
        self.poll = poll
        self._condition = threading.Condition()
        self._queue: list[tuple[int, int, Slot]] = []  # (priority, arrival, slot) of the waiters
        self._arrivals = 0
        self._running = {LIVE: 0, HEAVY: 0, BACKGROUND: 0}
        self.served = {LIVE: 0, HEAVY: 0, BACKGROUND: 0}  # slots given, per priority (tests, benchmarks)

    # --- what a page shows --------------------------------------------------------------------

    def running(self, priority: int | None = None) -> int:
        with self._condition:
            return sum(self._running.values()) if priority is None else self._running[priority]

    def waiting(self) -> int:
        with self._condition:
            return len(self._queue)

    def live_waiting(self) -> bool:
        with self._condition:
            return any(p == LIVE for p, _, _ in self._queue)

    # --- taking a slot -----------------------------------------------------------------------

    @contextmanager
    def slot(self, priority: int = HEAVY, token: Token | None = None,
             waiting: Callable[[int], None] | None = None) -> Iterator[Slot]:
        """Hold a slot of ``priority`` for the block; while queued, ``waiting(ahead)`` is called (at once, then
        whenever the number ahead changes) and ``token`` is checked (``Cancelled`` leaves the queue)."""
        if priority not in PRIORITY_NAMES:
            raise ValueError(f"unknown priority {priority!r}; use LIVE, HEAVY or BACKGROUND")
        mine = getattr(_CURRENT, "slot", None)
        if mine is not None and mine.held and mine.scheduler is self and mine.priority <= priority:
            yield mine  # work nested in work this thread already holds a slot for (no second slot, no deadlock)
            return
        held = Slot(self, priority, token)
        self._acquire(held, waiting)
        outer = getattr(_CURRENT, "slot", None)
        _CURRENT.slot = held  # checkpoint() in this thread now checks this slot's token
        try:
            yield held
        finally:
            _CURRENT.slot = outer
            if held.held:
                self._release(held)

    def _may_run(self, slot: Slot) -> bool:
        if slot.priority == BACKGROUND:
            return self._running[BACKGROUND] < self.background_limit
        busy = self._running[LIVE] + self._running[HEAVY]
        if slot.priority == HEAVY and self._running[HEAVY] >= self.heavy_limit:
            return False
        return busy < self.slots

    def _ahead(self, slot: Slot) -> int:
        """Waiters served before ``slot`` plus the slots it waits for to free (0 = it is next)."""
        mine = next(key for key in self._queue if key[2] is slot)
        background = slot.priority == BACKGROUND  # background jobs queue among themselves
        before = sum(1 for key in self._queue if key[:2] < mine[:2] and (key[2].priority == BACKGROUND) == background)
        return before + (0 if self._may_run(slot) else 1)

    def _acquire(self, slot: Slot, waiting: Callable[[int], None] | None) -> None:
        with self._condition:
            self._arrivals += 1
            key = (slot.priority, self._arrivals, slot)
            self._queue.append(key)
            last = None
            try:
                while True:
                    background = slot.priority == BACKGROUND  # background jobs queue among themselves
                    first = min((k for k in self._queue if (k[2].priority == BACKGROUND) == background),
                                key=lambda k: k[:2])
                    if first[2] is slot and self._may_run(slot):
                        break
                    if slot.token is not None and slot.token.cancelled:
                        raise Cancelled("cancelled while queued")
                    ahead = self._ahead(slot)
                    if waiting is not None and ahead != last:
                        last = ahead
                        self._condition.release()
                        try:
                            waiting(ahead)
                        finally:
                            self._condition.acquire()
                        continue
                    self._condition.wait(self.poll)
            finally:
                self._queue.remove(key)
                self._condition.notify_all()
            self._running[slot.priority] += 1
            self.served[slot.priority] += 1
            slot.held = True

    def _step_aside(self, slot: Slot, patience: float) -> None:
        self._release(slot)
        deadline = time.monotonic() + patience
        with self._condition:
            while any(p == LIVE for p, _, _ in self._queue) and time.monotonic() < deadline:
                if slot.token is not None and slot.token.cancelled:
                    break
                self._condition.wait(min(self.poll, max(0.0, deadline - time.monotonic())))
            self._running[slot.priority] += 1  # back, whether or not a slot is free (bounded: see yield_to_live)
            slot.held = True

    def _release(self, slot: Slot) -> None:
        with self._condition:
            self._running[slot.priority] -= 1
            slot.held = False
            self._condition.notify_all()


_CURRENT = threading.local()  # the slot this thread's computation holds (Scheduler.slot sets it)


def checkpoint() -> None:
    """Called inside long loops (every batch of the engine, every AM step): raises ``Cancelled`` when the
    calling thread's work has been cancelled, and lets waiting toggles go first. Free outside a slot."""
    slot = getattr(_CURRENT, "slot", None)
    if slot is not None:
        if slot.token is not None:
            slot.token.check()
        slot.ticks += 1
        if slot.on_tick is not None:
            slot.on_tick(slot.ticks)
        if not getattr(_CURRENT, "holding", 0):
            slot.yield_to_live()
            if slot.token is not None:
                slot.token.check()


@contextmanager
def holding_a_lock() -> Iterator[None]:
    """Inside the block ``checkpoint`` still cancels but never steps aside: the thread holds a lock that a
    toggle may need (a model's hooked-pass lock), and waiting for that toggle would deadlock."""
    _CURRENT.holding = getattr(_CURRENT, "holding", 0) + 1
    try:
        yield
    finally:
        _CURRENT.holding -= 1


_SCHEDULER: Scheduler | None = None
_SCHEDULER_GUARD = threading.Lock()


def scheduler() -> Scheduler:
    """The process's scheduler (one per server: every session's computations share it); with the policy off
    (``NRE_COMPUTE_POLICY=off``) one without limits, so that every request runs at once."""
    global _SCHEDULER
    with _SCHEDULER_GUARD:
        if _SCHEDULER is None:
            _SCHEDULER = Scheduler() if policy_on() else Scheduler(slots=UNLIMITED, background=UNLIMITED)
        return _SCHEDULER


def wait_for(seconds: float, token: Token | None = None, step: float = 0.05) -> None:
    """Sleep ``seconds`` in short steps, stopping (``Cancelled``) once ``token`` is cancelled (tests, benchmarks)."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if token is not None:
            token.check()
        time.sleep(min(step, max(0.0, end - time.monotonic())))
