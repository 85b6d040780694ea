"""Forward hooks that act only in the thread that registered them: the one way anything here reads or
changes a layer's output on a model that other threads may be running at the same time.

A hook sits on the module, not on the call, so on a model shared by app sessions (``st.cache_resource``)
a plain hook also fires on every other session's forward pass: one session's capture gets another's
activations, one session's mask lands on another's pass. Every hook here checks the calling thread
first and does nothing in any other thread; the masking engine's hooked path, the feature maps, AM's
layer outputs and the FLOPs count all go through ``thread_hook``.
"""
from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import Callable, Iterator

import torch
from torch import nn

Hook = Callable[[nn.Module, tuple, torch.Tensor], torch.Tensor | None]


@contextmanager
def thread_hook(module: nn.Module, hook: Hook) -> Iterator[None]:
    """``hook(module, inputs, output)`` as a forward hook of ``module`` for the ``with`` block, called only
    for forward passes run by this thread (a pass of the same module in another thread is left alone)."""
    owner = threading.get_ident()

    def filtered(mod: nn.Module, inputs: tuple, output: torch.Tensor):
        return hook(mod, inputs, output) if threading.get_ident() == owner else None

    handle = module.register_forward_hook(filtered)
    try:
        yield
    finally:
        handle.remove()


@contextmanager
def thread_pre_hook(module: nn.Module, hook: Callable[[nn.Module, tuple], tuple | None]) -> Iterator[None]:
    """``hook(module, inputs)`` as a forward *pre*-hook of ``module`` for the ``with`` block, in this thread only."""
    owner = threading.get_ident()

    def filtered(mod: nn.Module, inputs: tuple):
        return hook(mod, inputs) if threading.get_ident() == owner else None

    handle = module.register_forward_pre_hook(filtered)
    try:
        yield
    finally:
        handle.remove()


class _Reached(Exception):
    """Raised by the hook of ``module_output`` (``module_input``) to end the forward pass once the module's output
    (input) is in hand."""

    def __init__(self, output: torch.Tensor):
        super().__init__("module reached")
        self.output = output


def module_output(model: nn.Module, module: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """The output of ``module`` (a submodule of ``model``) when ``model`` runs on ``images``, private to
    the calling thread. The pass stops at the module (a torchvision graph cannot be cut there, so the
    hook ends it): the rest of the network is never run, and the output keeps its autograd graph."""
    def reached(_m, _i, out):
        raise _Reached(out)

    return _run_until_reached(model, module, images, thread_hook(module, reached))


def module_input(model: nn.Module, module: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """The (first) input of ``module`` when ``model`` runs on ``images``, private to the calling thread; the
    pass stops before the module runs (AM computes each image's own unit from it, ``core.interpret.am``)."""
    def reached(_m, inputs):
        raise _Reached(inputs[0])

    return _run_until_reached(model, module, images, thread_pre_hook(module, reached))


def _run_until_reached(model: nn.Module, module: nn.Module, images: torch.Tensor, hook) -> torch.Tensor:
    """Run ``model`` with ``hook`` (a context raising ``_Reached``) in place; the tensor it carried."""
    try:
        with hook:
            model(images)
    except _Reached as stop:
        return stop.output
    raise ValueError(f"{type(module).__name__} did not run in the model's forward pass")
