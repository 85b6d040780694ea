"""What an engine may assume about the model it shares with others, made safe:

- ``shared_eval_mode``: engine passes run with the model's modules in eval mode, and the modes found
  are put back, per module, only when the *last* concurrent pass on that model ends. A second thread
  never finds the model half restored (a train-mode model would otherwise run one thread's pass with
  batch statistics and update the caller's BatchNorm buffers).
- ``weights_state``: a cheap fingerprint of the weights (each parameter's and buffer's storage, torch's
  in-place version counter and a strided sample's sum), so caches built from the weights notice an
  in-place change (an optimizer step, ``load_state_dict``, ``p.data.mul_(-1)``) and are rebuilt.
- ``identity``: what a computation ran on (weights digest and dtype, data split and content digest,
  precision); pools carry it and consumers refuse a pool whose identity differs (``check_identity``).
"""
from __future__ import annotations

import contextlib
import functools
import threading
import weakref
from typing import Iterator

import torch
from torch import nn

from ..data import DataSplit, data_digest
from ..network.models import weights_digest

_EVAL: "weakref.WeakKeyDictionary[nn.Module, list]" = weakref.WeakKeyDictionary()  # model -> [passes, modules]
_EVAL_GUARD = threading.Lock()


@contextlib.contextmanager
def shared_eval_mode(model: nn.Module) -> Iterator[None]:
    """Eval mode for the duration of one engine pass; reference-counted per model across threads."""
    with _EVAL_GUARD:
        state = _EVAL.get(model)
        if state is None:
            training = [m for m in model.modules() if m.training]
            for module in training:
                module.training = False
            state = _EVAL[model] = [0, training]
        state[0] += 1
    try:
        yield
    finally:
        with _EVAL_GUARD:
            state[0] -= 1
            if state[0] == 0:
                for module in state[1]:
                    module.training = True
                del _EVAL[model]


_LOCKS: "weakref.WeakKeyDictionary[nn.Module, threading.Lock]" = weakref.WeakKeyDictionary()
_LOCKS_GUARD = threading.Lock()


def model_lock(model: nn.Module) -> threading.Lock:
    """One lock per model object, shared by every Engine on it (hooked passes of one model never overlap)."""
    with _LOCKS_GUARD:
        lock = _LOCKS.get(model)
        if lock is None:
            lock = _LOCKS[model] = threading.Lock()
        return lock


def in_eval_mode(method):
    """Run an Engine method with the model's modules in eval mode (BatchNorm statistics, no dropout), then
    put back the modes found, per module: a notebook user's model in train mode stays in train mode. The
    modes are restored when the last concurrent pass on the model ends (``shared_eval_mode`` above)."""
    @functools.wraps(method)
    def run(self, *args, **kwargs):
        with shared_eval_mode(self.model):
            return method(self, *args, **kwargs)
    return run


_SAMPLED = 4096  # elements per tensor in the fingerprint's sum (a whole-tensor sum would read every weight per pass)


def weights_state(model: nn.Module) -> tuple:
    """Changes when a parameter or buffer is replaced (storage) or changed in place through itself (torch's
    version counter: optimizer steps, ``load_state_dict``, ``p.mul_``), and when an edit through ``.data`` (which
    bypasses the counter) changes the sum of up to 4,096 evenly strided elements of a tensor (every
    whole-tensor edit; a single element outside the sample can go unnoticed)."""
    tensors = [t for t in (*model.parameters(), *model.buffers()) if t.is_floating_point()]
    if not tensors:
        return ()
    with torch.no_grad():
        sums = torch.stack([t.detach().reshape(-1)[::max(1, t.numel() // _SAMPLED)].sum(dtype=torch.float64)
                            for t in tensors]).tolist()
    return tuple((t.data_ptr(), t._version, s) for t, s in zip(tensors, sums))


def model_dtype(model: nn.Module) -> str:
    first = next((p for p in model.parameters() if p.is_floating_point()), None)
    return str(first.dtype).replace("torch.", "") if first is not None else "none"


def identity(model: nn.Module, data: DataSplit, precision: str) -> dict[str, str]:
    """What an evaluation depends on: the weights (content digest, dtype), the data (split, content) and
    the precision of the masked passes."""
    return {"weights": weights_digest(model), "dtype": model_dtype(model), "data": data.key,
            "data_digest": data_digest(data), "precision": precision}


_WHAT = {"weights": "other model weights", "dtype": "weights of another dtype", "data": "another data split",
         "data_digest": "other images/labels (same name and size)", "precision": "another precision"}


def check_identity(pool_identity: dict | None, wanted: dict) -> None:
    """Refuse, in one line, a pool whose identity is missing or differs from ``wanted``."""
    if pool_identity is None:
        raise ValueError("this pool does not say which model weights, data and precision it evaluates on "
                         "(no `identity`): make it with core.engine_pool / LocalPool / RayPool on this engine")
    differ = [key for key in wanted if pool_identity.get(key) != wanted[key]]
    if differ:
        details = "; ".join(f"{_WHAT[k]} ({str(pool_identity.get(k))[:16]} vs {str(wanted[k])[:16]})" for k in differ)
        raise ValueError(f"the pool was made on {details}: make the pool from an engine on this model and data")


__all__ = ["shared_eval_mode", "in_eval_mode", "model_lock", "weights_state", "identity", "check_identity", "model_dtype"]
