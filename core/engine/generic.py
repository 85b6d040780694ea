"""The engine's private frozen copy of a model without staged blocks (torchvision): gradient passes.

A staged model's gradient methods (Taylor, importance switches, class contributions γ) run the engine's
frozen copy of the blocks after the layer, from the prefix cache. A torchvision graph cannot be cut at a
layer, so for it the engine keeps one private copy of the *whole* model, in eval mode with requires_grad
off, and runs a full forward pass with the layer's output changed by a hook at its mask point (the same
point where masking switches units off). Backward through it reaches only what the caller asks for (a
gate, an offset): no .grad ever lands on the shared model, its modes and hooks are never touched, and
other sessions' passes on it are unaffected. The hooks sit on the copy and act only in the calling thread
(``core.network.hooks.thread_hook``); one lock per copy keeps a hook from being added while another
thread's pass runs through the copy's modules. The engine drops the copy when the weights change.
"""
from __future__ import annotations

import contextlib
import threading
from typing import Callable

import torch
from torch import nn

from ..network.hooks import module_output, thread_hook
from ..network.models import mask_point, private_copy

Change = Callable[[torch.Tensor], torch.Tensor]


class FrozenCopy:
    """A private eval-mode copy of a whole model, requires_grad off, for hooked gradient passes."""

    def __init__(self, model: nn.Module):
        self.net = private_copy(model).requires_grad_(False).eval()
        self._lock = threading.Lock()

    def logits(self, images: torch.Tensor, layers: list[str], change: Change) -> torch.Tensor:
        """Logits of the copy on ``images`` with the output A of each layer's mask point replaced by change(A)
        (a coupled group: every member gets the same change, so a gradient is the whole group's)."""
        with self._lock, contextlib.ExitStack() as hooks:
            for layer in layers:
                hooks.enter_context(thread_hook(mask_point(self.net, layer), lambda _m, _i, out: change(out)))
            return self.net(images)

    @torch.no_grad()
    def output(self, layer: str, images: torch.Tensor) -> torch.Tensor:
        """The layer's output (at its mask point) on ``images``; the pass stops there."""
        with self._lock:
            return module_output(self.net, mask_point(self.net, layer), images)


def pre_activation_message(layer: str, norm: str) -> str:
    """Why a layer whose channels enter a foreign BatchNorm cannot be masked (or gated) here."""
    return (f"{layer} cannot be masked here: its channels enter the BatchNorm {norm} (a pre-activation design, "
            f"e.g. DenseNet), which still adds its shift to a zeroed channel, so the masked network would not be "
            f"the pruned one")


__all__ = ["FrozenCopy", "pre_activation_message"]
