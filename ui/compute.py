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
import weakref
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
GENERIC_AM_STEPS = 32  # a torchvision model (224x224 input): its steps cost far more (see default_am_size)
GENERIC_AM_SIZES = (224, 160, 112, 80, 64, 48, 32)  # AM image sides offered on a torchvision model, largest first
AM_BUDGET_S = 60.0  # a torchvision layer's default AM size is the largest estimated to take about this long
# Seconds per AM step and unit on one thread of this 2-core machine (ResNet-18, fitted to measured steps of conv1
# to layer4 at 64-224 px, load 2-5): the image's parameterization and transforms per pixel, and the network up to
# the layer per multiply-add (forward and backward; the layer itself computes only each image's own unit).
# Measured at the defaults (32 steps, load 4-5): conv1 224 px 46 s, layer1.1.conv2 112 px 45 s, layer2.1.conv2
# 64 px 36 s; at 64 px layer3.1.conv2 took 176 s and layer4.1.conv2 357 s, so those default to 32 px.
_SECONDS_PER_PIXEL = 2.6e-7
_SECONDS_PER_MAC = 1.5e-10


def default_am_steps(chosen) -> int:
    """The AM step count a page offers first: fewer on a torchvision model, whose images are 224x224."""
    return AM_STEPS if core.network.models.is_staged(chosen.model) else GENERIC_AM_STEPS


def am_step_seconds(layers: list, layer: str, input_side: int, size: int) -> float:
    """Estimated seconds of one AM step of every unit of ``layer`` at ``size`` pixels (one thread, see above);
    ``layers``: ``core.prunable_layers`` of the model, in forward order."""
    names = [info.name for info in layers]
    here = layers[names.index(layer)]
    before = sum(info.flops for info in layers[:names.index(layer)]) + here.flops / here.units
    scale = (size / input_side) ** 2
    return here.units * (before * scale * _SECONDS_PER_MAC + size * size * _SECONDS_PER_PIXEL)


def default_am_size(chosen, layer: str | None = None) -> int | None:
    """The AM image side a page offers first: None (the input size) on our staged models; on a torchvision
    model the largest of GENERIC_AM_SIZES whose GENERIC_AM_STEPS steps are estimated at AM_BUDGET_S or less
    (ResNet-18: 224 px for conv1, 112-160 px in layer1, 64-80 px in layer2, 32 px in layer3 and layer4, where
    even that takes longer). ``layer``: another layer than the selected one."""
    if core.network.models.is_staged(chosen.model):
        return None
    layers, side = _layers(chosen.model), chosen.meta.input_shape[-1]
    layer = layer or chosen.layer
    for size in GENERIC_AM_SIZES:
        if size <= side and GENERIC_AM_STEPS * am_step_seconds(layers, layer, side, size) <= AM_BUDGET_S:
            return size
    return min(GENERIC_AM_SIZES)


def am_size_input(chosen, steps: int, container=None) -> int | None:
    """The AM image size for a torchvision model (a select box, default ``default_am_size``, with the estimated
    time for this layer); None on our staged models, whose AM images are their input size."""
    default = default_am_size(chosen)
    if default is None:
        return None
    side, layers = chosen.meta.input_shape[-1], _layers(chosen.model)
    sizes = [size for size in GENERIC_AM_SIZES if size <= side] or [side]
    size = (container or st).selectbox(
        "AM image size (pixels)", sizes, index=sizes.index(default) if default in sizes else 0,
        key=f"am_size:{chosen.model_key}:{chosen.layer}",
        format_func=lambda px: f"{px} px, ~{_duration(steps * am_step_seconds(layers, chosen.layer, side, px))}",
        help="A torchvision model takes smaller AM images than its input. Each step runs the network up to this "
             f"layer on one image per unit, so the time grows with the pixels and the layer's depth. The default "
             f"is the largest size estimated at about {AM_BUDGET_S:.0f} s for this layer on one CPU thread "
             "(measured on ResNet-18, README 'A class on one server').")
    (container or st).caption(
        f"A torchvision model's AM defaults to {GENERIC_AM_STEPS} steps at the largest image size estimated at about "
        f"{AM_BUDGET_S:.0f} s for the layer on one CPU thread ({default} px here). Measured on this 2-core machine, one "
        "thread: ResNet-18 conv1 at 224 px 46 s, layer1.1.conv2 at 112 px 45 s, layer2.1.conv2 at 64 px 36 s, "
        "layer4.1.conv2 at 32 px 63 s.")
    return int(size)


_LAYERS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def _layers(model) -> list:
    """``core.prunable_layers`` (a counting pass at 224x224), once per model: the estimates read it per layer."""
    if model not in _LAYERS:
        _LAYERS[model] = core.prunable_layers(model)
    return _LAYERS[model]


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.0f} min"


__all__ = ["default_am_steps", "default_am_size", "am_size_input", "am_step_seconds", "apply_policy", "heavy", "live",
           "background", "session_alive_check", "Work", "Cancelled"]
