"""Class contributions gamma (paper B Eq. 2): how much each unit pushes each class's probability.

Exact definition used here. Gate the layer: its output unit i becomes ``g_i * A_i`` (A_i is the
unit's feature map after BN/ReLU, or the neuron for an fc layer), with g = 1 the unchanged net.

    gamma[i, j] = mean over images x of  dP(y_j | x) / dg_i  at g = 1
                = mean over x of  sum_{h,w} dP(y_j | x)/dA_i(h, w) * A_i(h, w)

i.e. the derivative of class j's softmax probability with respect to the *strength* of filter
i's activation (the feature map scaled as a whole). Paper B writes dP(y_j)/dA_i with A_i "the
filter's activation" as one number; the gate is that number for a feature map, and it has a
plain reading: switching unit i off is g_i 1 -> 0, so P(y_j) changes by about -gamma[i, j].
Positive = the unit supports class j, negative = it argues against it. Each image's
probabilities sum to 1, so every row of gamma sums to 0.

Paper B's literal definition is also offered (``definition="paper"``):

    gamma_paper[i, j] = mean over images x and positions (h, w) of  dP(y_j | x) / dA_i(h, w)

the plain derivative with respect to the activation, averaged over the feature map (for an fc
unit there is one position). The two differ by the activation factor: "gate" weighs each
position's gradient by how strongly the filter fires there (so a dead filter has gamma = 0 and
the rows sum to 0), "paper" measures how sensitive the classes are to a small *additive* change
of the filter's output wherever it is, even where the filter never fires. "gate" is the default
because its reading (the probability change when the unit is switched off) is what pruning
needs; the SD matrix records which definition it used.

Computed with ``Engine.modulated_logits`` (the one masking engine: a gate or an offset on the layer's
output, the frozen suffix of a staged model or a private frozen copy of a torchvision one, where a
coupled layer is changed in every layer of its group) and autograd with batched grad outputs: one
forward and one vectorized backward per batch give all classes at once. A model with more outputs than
the data has classes (an ImageNet model on the digits) gets the data's classes, its first outputs, as
accuracy reads them; its rows then need not sum to 0.
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import plotly.graph_objects as go
import torch
from torch import nn

from ..engine.cache import cached
from ..data import DataSplit
from ..engine import Engine

Progress = Callable[[int, int], None]


DEFINITIONS = ("gate", "paper")


def _gamma(engine: Engine, layer: str, batch_size: int, progress: Progress | None,
           definition: str = "gate") -> np.ndarray:
    shape = engine.unit_shape(layer)  # (units, *map), from one image on a generic model
    units, n = shape[0], len(engine.data)
    classes = len(engine.data.class_names)
    positions = int(np.prod(shape[1:])) if len(shape) > 1 else 1
    start = 1.0 if definition == "gate" else 0.0
    gate = torch.full((units,), start, device=engine.device, requires_grad=True)
    if definition == "gate":
        def change(x):  # g_i * A_i: d/dg_i = sum over positions of dP/dA_i * A_i
            return x * gate.to(x.dtype).view(1, -1, *([1] * (x.dim() - 2)))
    else:
        def change(x):  # A_i + o_i at every position: d/do_i = sum over positions of dP/dA_i
            return x + gate.to(x.dtype).view(1, -1, *([1] * (x.dim() - 2)))
    basis = torch.eye(classes, device=engine.device)
    total = torch.zeros(units, classes, device=engine.device, dtype=torch.float64)
    batch_size = engine.gradient_batch(batch_size)
    batches = range(0, n, batch_size)
    for done, lo in enumerate(batches, 1):
        index = slice(lo, min(n, lo + batch_size))
        with torch.enable_grad():
            logits = engine.modulated_logits(layer, change, index)
            # a model with more outputs than the data's classes (ImageNet on digits): the data's classes, as
            # accuracy reads them (softmax over every output, then the first ``classes``)
            probability = logits.softmax(-1)[:, :classes].sum(0)  # (classes,) over the batch
            # one vectorized backward per class basis vector: the (classes, units) Jacobian
            (jacobian,) = torch.autograd.grad(probability, gate, grad_outputs=basis, is_grads_batched=True)
        total += jacobian.t().double()
        if progress is not None:
            progress(done, len(batches))
    scale = n if definition == "gate" else n * positions  # "paper": also the mean over positions
    return (total / scale).float().cpu().numpy()


def class_contributions(model: nn.Module, data: DataSplit, layer: str, batch_size: int = 256,
                        progress: Progress | None = None, cache: bool = True,
                        engine: Engine | None = None, definition: str = "gate") -> np.ndarray:
    """gamma: (units, classes) mean dP(class)/d(gate of unit) over ``data`` (see the module doc).

    ``definition``: "gate" (default, d/d of a gate scaling the unit's whole activation) or "paper"
    (paper B's literal mean of dP/dA over images and positions).

    Pass an existing ``engine`` to reuse its cached activations. Cached on disk by checkpoint
    hash, data split and layer."""
    engine = engine or Engine(model, data)
    engine.units(layer)  # validates the layer name with a clear message
    if batch_size < 1:
        raise ValueError(f"batch size must be at least 1 (got {batch_size})")
    if definition not in DEFINITIONS:
        raise ValueError(f"gamma definition must be 'gate' or 'paper', not {definition!r}")

    def compute():
        return {"gamma": _gamma(engine, layer, batch_size, progress, definition)}, {}

    if not cache:
        return compute()[0]["gamma"]
    from ..data import data_digest  # content hashes, as the rankings cache uses
    from ..network.models import weights_digest

    key = {"checkpoint": getattr(getattr(model, "meta", None), "sha256", ""), "weights": weights_digest(model),
           "data": data.key, "data_digest": data_digest(data), "layer": layer, "version": 1}
    if definition != "gate":  # the gate entries keep their key (their values did not change)
        key["definition"] = definition
    arrays, _ = cached("gamma", key, compute)
    return arrays["gamma"]


def gamma_figure(gamma: np.ndarray, class_names: Sequence[str], units: Sequence[int] | None = None,
                 title: str = "Class contributions γ (paper B Eq. 2)") -> go.Figure:
    """Heatmap units x classes, diverging colours centred at 0 (red = supports the class, blue = opposes)."""
    units = list(range(len(gamma))) if units is None else list(units)
    values = gamma[units]
    # symmetric limits at the 98th percentile of |gamma|: one extreme cell would wash out all the others
    limit = float(np.percentile(np.abs(values), 98)) or float(np.abs(values).max()) or 1.0
    figure = go.Figure(go.Heatmap(
        z=values, x=[str(c) for c in class_names], y=[f"unit {u}" for u in units],
        colorscale="RdBu_r", zmid=0, zmin=-limit, zmax=limit,
        colorbar=dict(title=dict(text="dP/dgate", side="right")),
        hovertemplate="%{y}, class %{x}: γ = %{z:.4f}<extra></extra>"))
    figure.update_layout(title=title, xaxis_title="class", yaxis_title="unit",
                         yaxis=dict(autorange="reversed", type="category"), xaxis=dict(type="category"),
                         height=max(320, 22 * len(units) + 140), margin=dict(l=80, r=20, t=60, b=50),
                         font=dict(size=14))
    return figure
