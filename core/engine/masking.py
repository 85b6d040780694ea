"""The one masking + evaluation engine.

A mask says which units are *off*, per layer. Masks are arguments, never written into the
model, so one cached model can serve many sessions. Everything that evaluates a masked
network (live toggles, Shapley, pruning curves, pruning) goes through ``Engine``.

Speed (DESIGN.md section 3): for our staged models the activations leaving a layer are
cached once per (model, data split, layer), and only the rest of the network runs. K masks
are evaluated in one pass by stacking them along the batch dimension. When the next layer is
a conv/linear that consumes the masked channels directly, its pre-activation is linear in
the mask, so each channel's contribution is precomputed and masks combine by one einsum.
"""
from __future__ import annotations

import contextlib
import copy
import threading
from typing import Iterator, Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..data import DataSplit
from ..network.device import model_device
from ..network.hooks import thread_hook
from .compute import checkpoint, holding_a_lock
from .generic import Change, FrozenCopy, pre_activation_message
from .linear import channel_contributions, consumer, consumer_out_numel
from ..network.models import is_staged, layer_names, mask_point, unit_count
from .state import identity, in_eval_mode, model_lock, weights_state
from .masks import (BatchResult, EvalResult, Off, _broadcast, check_compatible, check_precision, keep_vector)

_LINEAR_CACHE_BYTES = 384 * 2**20  # the per-channel contribution cache is skipped above this
_CHUNK_ELEMENTS = 8 * 2**20  # floats per stacked (masks x images) activation chunk
_LINEAR_CHUNK_ELEMENTS = 2**18  # the fast path is memory-bound: 1 MB chunks stay in cache (1.3-1.4x faster)
_GRADIENT_ELEMENTS = 2**22  # input floats per gradient pass of a generic model (ResNet-18 at 224x224: 27 images)


class Engine:
    """Evaluates masked versions of ``model`` on ``data``; holds the per-layer caches.

    ``precision``: "float32" (default), "bfloat16" or "float16": the masked evaluation (the network
    after the cached layer, or the whole hooked/unmasked pass) runs under ``torch.autocast`` with that
    dtype. The cached prefix activations stay float32 and every accuracy/loss is returned as float64.
    Gradient-based uses (``gated_logits``) stay float32."""

    def __init__(self, model: nn.Module, data: DataSplit, batch_size: int = 1024, precision: str = "float32"):
        check_compatible(model, data)
        self.model = model  # left in the mode it is in: every pass here runs in eval mode (_in_eval_mode)
        self.data = data
        self.batch_size = batch_size
        self.device = model_device(model)
        self.precision = precision
        self._autocast_dtype = check_precision(precision, self.device)
        self.staged = is_staged(model)
        self.layers = layer_names(model)
        self._children = list(model.named_children()) if self.staged else []
        self._prefix: dict[str, torch.Tensor] = {}
        self._linear: dict[str, tuple | None] = {}
        self._lock = threading.Lock()  # one shared engine serves many app sessions
        self._frozen: list[tuple[str, nn.Module]] | None = None
        self._frozen_net: FrozenCopy | None = None  # generic models: the whole network, private and frozen
        self._shapes: dict[str, tuple[int, ...]] = {}
        self._coupled: tuple[list[list[str]], dict[str, str]] | None = None
        self._labels = data.labels.to(self.device)
        self._weights_state = weights_state(model)  # the caches below were built from these weights
        self._identity: tuple | None = None

    # --- public API ---------------------------------------------------------------------

    def identity(self) -> dict[str, str]:
        """What this engine evaluates on: weights digest and dtype, data split and content, precision
        (``core.engine.state.identity``); a pool carries its engine's and consumers compare the two."""
        state = self._sync_weights()
        with self._lock:
            if self._identity is None or self._identity[0] != state:
                self._identity = (state, identity(self.model, self.data, self.precision))
            return dict(self._identity[1])

    def _sync_weights(self) -> tuple:
        """Drop the prefix, linear and frozen-copy caches when the weights changed in place since they were
        built (an optimizer step, ``load_state_dict``, an edit through ``.data``)."""
        state = weights_state(self.model)
        with self._lock:
            if state != self._weights_state:
                self._prefix.clear()
                self._linear.clear()
                self._frozen = None
                self._frozen_net = None
                self._weights_state = state
        return state

    def units(self, layer: str) -> int:
        self._check_layer(layer)
        return unit_count(self.model, layer)

    def keep_masks(self, off: Off | None) -> dict[str, torch.Tensor]:
        """Validate an ``off`` mapping and turn it into keep vectors (only masked layers)."""
        masks = {}
        for layer, units in (off or {}).items():
            units = list(units)
            if units:
                masks[layer] = keep_vector(self.units(layer), units, self.device)
        return masks

    @torch.no_grad()
    @in_eval_mode
    def logits(self, off: Off | None = None) -> torch.Tensor:
        """Logits of the masked network for every image of the split."""
        masks = self.keep_masks(off)
        if not self.staged:
            return self._hooked_logits(masks)
        if not masks:
            images = self.data.images
            with self._reduced():
                return torch.cat([self._out(self._run(images[s].to(self.device), 0, {}))
                                  for s in self._batches(len(images), images[0].numel())])
        first = min(masks, key=self.layers.index)
        return self._suffix_logits(first, masks[first].unsqueeze(0), rest={k: v for k, v in masks.items()
                                                                          if k != first})[0]

    def evaluate(self, off: Off | None = None) -> EvalResult:
        """Accuracy overall, per class, confusion matrix and loss of the network with ``off`` units off."""
        logits = self.logits(off)
        labels = self._labels
        loss = float(F.cross_entropy(logits, labels))
        predicted = logits.argmax(1)
        classes = len(self.data.class_names)
        # a model with more classes than the data (ImageNet on digits) predicts outside them: one "other" column
        columns = classes + 1 if logits.shape[1] > classes else classes
        confusion = torch.bincount(labels * columns + predicted.clamp(max=columns - 1), minlength=classes * columns)
        confusion = confusion.view(classes, columns).cpu().numpy()
        with np.errstate(invalid="ignore", divide="ignore"):
            per_class = np.diag(confusion) / confusion.sum(1)
        return EvalResult(float((predicted == labels).float().mean()), loss, per_class, confusion,
                          predicted.cpu().numpy(), len(labels))

    @torch.no_grad()
    @in_eval_mode
    def evaluate_masks(self, layer: str, keep: torch.Tensor | np.ndarray, images: np.ndarray | None = None,
                       per_image: bool = False) -> BatchResult:
        """Accuracy and loss for K keep vectors of one layer, shape (K, units), 1 = on.

        ``images``: indices of the images to evaluate on (default all); ``per_image``: also return
        each image's correctness and loss, (K, images) (the image-subset Shapley payoff needs them)."""
        self._check_layer(layer)
        keep = torch.as_tensor(keep, dtype=torch.float32, device=self.device)
        if keep.dim() == 1:
            keep = keep.unsqueeze(0)
        if keep.shape[1] != self.units(layer):
            raise ValueError(f"{layer} has {self.units(layer)} units, masks have {keep.shape[1]}")
        index = None if images is None else torch.as_tensor(np.asarray(images), dtype=torch.long)
        labels = self._labels if index is None else self._labels[index.to(self.device)]
        if self.staged:
            logits = self._suffix_logits(layer, keep, index=index)  # (K, N, classes)
        else:
            logits = torch.stack([self._hooked_logits({layer: k}, index) for k in keep])
        labels = labels.expand(len(keep), -1)
        correct = (logits.argmax(-1) == labels).float()
        # cross entropy as logsumexp - target logit: the same value, but F.cross_entropy's log_softmax is
        # ~5x slower on K*N short rows and was a quarter of the batched time
        flat, target = logits.flatten(0, 1), labels.flatten()
        losses = (torch.logsumexp(flat, -1) - flat.gather(1, target[:, None])[:, 0]).view(len(keep), -1)
        result = BatchResult(correct.mean(1).cpu().numpy().astype(np.float64),
                             losses.mean(1).cpu().numpy().astype(np.float64))
        if per_image:
            result.correct, result.image_loss = correct.cpu().numpy(), losses.float().cpu().numpy()
        return result

    def activations(self, layer: str) -> torch.Tensor:
        """The layer's unmasked output on every image of the split (cached)."""
        self._check_layer(layer)
        self._sync_weights()
        with self._lock:
            if layer not in self._prefix:
                self._prefix[layer] = self._compute_prefix(layer)
            return self._prefix[layer]

    def modulated_logits(self, layer: str, change: Change, index: torch.Tensor | slice = slice(None)) -> torch.Tensor:
        """Differentiable logits of the images ``index`` with the layer's output A replaced by ``change(A)``
        (A: (B, units, ...), where masking switches units off); what every gradient method reads.

        Staged models: the frozen suffix from the prefix cache. Any other model: a full pass of the engine's
        private frozen copy, A changed by a hook at the mask point; a coupled layer's change applies to every
        layer of its group (as masking removes a unit from all of them), and a pre-activation layer is refused
        (``core.engine.generic``). Neither touches the shared model (no .grad, no hook, no mode change)."""
        self._check_layer(layer)
        if self.staged:
            x = change(self.activations(layer)[index])
            for _, block in self._frozen_blocks()[self._position(layer) + 1:]:
                x = block(x)
            return x
        self._check_maskable([layer])
        group = next((g for g in self.coupled_groups() if layer in g), [layer])
        checkpoint()  # a cancelled gradient method stops at its next pass
        index = index.cpu() if isinstance(index, torch.Tensor) else index
        return self._frozen_copy().logits(self.data.images[index].to(self.device), group, change)

    def gated_logits(self, layer: str, gate: torch.Tensor, index: torch.Tensor | slice = slice(None)) -> torch.Tensor:
        """Differentiable logits with the layer's outputs scaled by ``gate`` (units,) or (B, units), for the
        images ``index``; used by gradient-based methods (Taylor, importance switches, γ): gate 0 = unit off."""
        return self.modulated_logits(layer, lambda x: x * _broadcast(gate.to(x.dtype), x), index)

    def unit_shape(self, layer: str) -> tuple[int, ...]:
        """The layer's output shape for one image, (units, *map): from the prefix cache of a staged model, else
        from one image through the frozen copy (a generic model's activations are never all kept)."""
        self._check_layer(layer)
        if self.staged:
            return tuple(self.activations(layer).shape[1:])
        copy_ = self._frozen_copy()
        with self._lock:
            known = self._shapes.get(layer)
        if known is None:
            known = tuple(copy_.output(layer, self.data.images[:1].to(self.device)).shape[1:])
            with self._lock:
                self._shapes[layer] = known
        return known

    def layer_outputs(self, layer: str) -> Iterator[torch.Tensor]:
        """The layer's unmasked output on the split's images, in batches: the prefix cache of a staged model (one
        batch), else the private frozen copy's passes (the shared model's modes and hooks are never touched)."""
        self._check_layer(layer)
        if self.staged:
            yield self.activations(layer)
            return
        images, copy_ = self.data.images, self._frozen_copy()
        for s in self._batches(len(images), images[0].numel()):
            yield copy_.output(layer, images[s].to(self.device))

    def unit_peaks(self, layer: str) -> torch.Tensor:
        """(units,): each unit's largest |activation| over the split's images (0 = a dead unit); of a generic
        model's batches only the running maximum is kept."""
        peak = None
        for acts in self.layer_outputs(layer):
            top = (acts.abs().flatten(2).amax(2) if acts.dim() > 2 else acts.abs()).amax(0)
            peak = top if peak is None else torch.maximum(peak, top)
        return peak

    def gradient_batch(self, wanted: int) -> int:
        """Images per gradient pass: ``wanted``, fewer for a generic model (a full pass with its autograd
        graph per image; the sums the gradient methods take do not depend on the batches)."""
        if self.staged:
            return wanted
        return max(1, min(wanted, _GRADIENT_ELEMENTS // max(1, self.data.images[0].numel())))

    # --- internals ----------------------------------------------------------------------

    def _reduced(self):
        """The autocast context of this engine's precision (a no-op for float32)."""
        if self._autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self._autocast_dtype)

    def _out(self, logits: torch.Tensor) -> torch.Tensor:
        """Reduced-precision logits back to float32 (a float32/float64 model's logits stay as they are)."""
        return logits.float() if self._autocast_dtype is not None else logits

    def _frozen_blocks(self) -> list[tuple[str, nn.Module]]:
        """A private eval-mode copy of the blocks with requires_grad off, so backward through gated_logits
        reaches the gate only: no .grad ever lands on the shared model, and no weight grads are computed."""
        with self._lock:
            if self._frozen is None:
                self._frozen = [(name, copy.deepcopy(block).requires_grad_(False).eval()) for name, block in self._children]
            return self._frozen

    def _frozen_copy(self) -> FrozenCopy:
        """The generic model's private frozen copy (``core.engine.generic``), rebuilt after a weight change."""
        self._sync_weights()
        with self._lock:
            if self._frozen_net is None:
                self._frozen_net = FrozenCopy(self.model)
            return self._frozen_net

    def _check_maskable(self, layers) -> None:
        """Refuse pre-activation layers (their channels enter a foreign BatchNorm): masking them is not pruning."""
        faults = self._coupling()[1]
        for layer in layers:
            if layer in faults:
                raise ValueError(pre_activation_message(layer, faults[layer]))

    def _check_layer(self, layer: str) -> None:
        if layer not in self.layers:
            raise ValueError(f"unknown layer {layer!r}; prunable layers: {', '.join(self.layers)}")

    def _position(self, layer: str) -> int:
        return [n for n, _ in self._children].index(layer)

    def _run(self, x: torch.Tensor, start: int, masks: Mapping[str, torch.Tensor], stop: int | None = None) -> torch.Tensor:
        """Run children[start:stop] of a staged model, masking block outputs listed in ``masks``.

        A mask may be (C,) or (B, C) for per-sample masks (stacked coalitions)."""
        for name, block in self._children[start:stop]:
            x = block(x)
            if name in masks:
                x = x * _broadcast(masks[name].to(x.dtype), x)
        return x

    def _batches(self, n: int, per_item: int, budget: int | None = None):
        size = max(1, min(self.batch_size, (budget or _CHUNK_ELEMENTS) // max(1, per_item)))
        for lo in range(0, n, size):
            checkpoint()  # cancelled work stops here, and a waiting toggle goes first (core.engine.compute)
            yield slice(lo, min(n, lo + size))

    @torch.no_grad()  # the cache must hold values, not an autograd graph into the shared weights
    @in_eval_mode
    def _compute_prefix(self, layer: str) -> torch.Tensor:
        if not self.staged:
            raise ValueError("the prefix cache needs one of our staged models (lenet5, vgg16)")
        stop = self._position(layer) + 1
        images = self.data.images
        outs = [self._run(images[s].to(self.device), 0, {}, stop) for s in self._batches(len(images), images[0].numel())]
        return torch.cat(outs)

    def _suffix_logits(self, layer: str, keep: torch.Tensor, rest: Mapping[str, torch.Tensor] | None = None,
                       index: torch.Tensor | None = None) -> torch.Tensor:
        """Logits (K, N, classes) for K keep vectors of ``layer``, other layers' masks in ``rest``;
        only the images ``index`` when given."""
        acts = self.activations(layer)
        keep = keep.to(acts.dtype)  # a float64/float16 model gets masks of its own precision
        linear = self._linear_split(layer) if not rest else None
        if index is not None:
            index = index.to(acts.device)
            acts = acts[index]
            if linear is not None:
                linear = (linear[0][index], *linear[1:])
        start = self._position(layer) + 1
        k = len(keep)
        out = []
        per_item = acts[0].numel() * k if linear is None else linear[0][0].numel() // acts.shape[1] * k
        for s in self._batches(len(acts), per_item, None if linear is None else _LINEAR_CHUNK_ELEMENTS):
            with self._reduced():
                if linear is None:
                    x = acts[s].unsqueeze(0) * keep.view(k, 1, -1, *([1] * (acts.dim() - 2)))
                    x = self._run(x.flatten(0, 1), start, rest or {})
                else:
                    contrib, bias, tail, resume = linear
                    pre = torch.einsum("kc,nc...->kn...", keep, contrib[s]) + bias
                    x = self._run(tail(pre.flatten(0, 1)), resume, {})
            out.append(self._out(x).view(k, -1, x.shape[-1]))
        return torch.cat(out, 1)

    def _linear_split(self, layer: str):
        """(contributions, bias, rest-of-consumer-block, resume index) or None.

        contributions[n, c] = what input channel c adds to the consumer's pre-activation for
        image n; the pre-activation under a mask is bias + sum_c keep[c] * contributions[:, c]."""
        with self._lock:
            if layer in self._linear:
                return self._linear[layer]
        split = consumer(self._children, self._position(layer) + 1)
        result = None
        if split is not None:
            weight_mod, tail, resume, flatten = split
            acts = self._prefix.get(layer)
            acts = self.activations(layer) if acts is None else acts
            n, c = acts.shape[:2]
            out_numel = consumer_out_numel(weight_mod, acts[:1], flatten)
            if n * c * out_numel * 4 <= _LINEAR_CACHE_BYTES:
                contrib = channel_contributions(weight_mod, acts, flatten)
                bias = weight_mod.bias if weight_mod.bias is not None else torch.zeros(1, device=self.device)
                bias = bias.view(-1, *([1] * (contrib.dim() - 3))) if isinstance(weight_mod, nn.Conv2d) else bias
                result = (contrib, bias, tail, resume)
        with self._lock:
            self._linear[layer] = result
        return result

    def coupled_groups(self) -> list[list[str]]:
        """Layers whose channels are coupled across residual adds (torchvision models; [] for staged ones).

        Masking a unit of one of them masks it in every layer of its group: that is what pruning it
        means (``core.network.coupling``, Torch-Pruning's dependency graph)."""
        return self._coupling()[0]

    def _coupling(self) -> tuple[list[list[str]], dict[str, str]]:
        """(coupled groups, pre-activation layers that masking cannot prune), traced once (``coupling.analyse``)."""
        if self.staged:
            return [], {}
        with self._lock:
            if self._coupled is None:
                from ..network.coupling import analyse
                self._coupled = analyse(self.model)
            return self._coupled

    def _couple(self, masks: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """A coupled layer's mask applies to every layer of its group (the product of the group's masks)."""
        masks = dict(masks)
        for group in self.coupled_groups() if masks else []:
            present = [masks[layer] for layer in group if layer in masks]
            if present:
                keep = torch.stack(present).prod(0)
                masks.update({layer: keep for layer in group})
        return masks

    def _hooked_logits(self, masks: Mapping[str, torch.Tensor], index: torch.Tensor | None = None) -> torch.Tensor:
        """Any model: a full forward pass with the masks applied by forward hooks.

        The hooks sit on the shared model, so they are made safe for concurrent sessions: one lock
        per model serializes hooked passes (two engines on one model included), and each hook masks
        only in the thread that registered it (``core.network.hooks.thread_hook``, the one mechanism
        every hook of ``core`` uses), so a pass running in another thread at the same time (feature
        maps, AM) never sees this call's masks."""
        if masks:
            self._check_maskable(masks)
        masks = self._couple(masks)

        def hook(_m, _i, out, keep):
            return out * _broadcast(keep.to(out.dtype), out)

        with model_lock(self.model), holding_a_lock(), contextlib.ExitStack() as hooks:
            for layer, keep in masks.items():
                hooks.enter_context(thread_hook(mask_point(self.model, layer),
                                                lambda m, i, out, keep=keep: hook(m, i, out, keep)))
            images = self.data.images if index is None else self.data.images[index.cpu()]
            with self._reduced():
                return torch.cat([self._out(self.model(images[s].to(self.device)))
                                  for s in self._batches(len(images), images[0].numel())])
