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
def captured(module: nn.Module) -> Iterator[list[torch.Tensor]]:
    """The outputs of ``module`` in this thread's forward passes during the block, in order."""
    outputs: list[torch.Tensor] = []
    with thread_hook(module, lambda _m, _i, out: outputs.append(out)):
        yield outputs


def module_output(model: nn.Module, module: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """The output of ``module`` (a submodule of ``model``) when ``model`` runs on ``images``, private to
    the calling thread. Runs the whole model (a torchvision graph cannot be cut at a module)."""
    with captured(module) as outputs:
        model(images)
    if not outputs:
        raise ValueError(f"{type(module).__name__} did not run in the model's forward pass")
    return outputs[0]
