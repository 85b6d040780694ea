"""Which filters of a layer do the same job: similarity degree (paper B Eq. 3) and clusters (Alg. 1).

**Similarity degree.** For units i, j of one layer

    SD[i, j] = D_am[i, j] / mean(D_am) + D_gamma[i, j] / mean(D_gamma)

- D_am: Euclidean distance between the two AM patterns, each as a centred, unit-L2-norm vector
  (``pattern_vectors``), so D_am = sqrt(2 - 2 corr) in [0, 2] compares the *pattern*, not the
  brightness or contrast the optimizer happened to reach. For a conv layer the vector is the
  amplitude of the image's 2-D Fourier spectrum, not its pixels: a conv unit's objective averages
  over positions and AM is optimized under random shifts, so *where* the stripes fall is
  arbitrary, while their orientation and frequency (what the spectrum amplitude keeps) is the
  filter's function. Pixel distances between such images are all about the same (we measured a
  spread of 0.08 vs 0.19 for spectra on LeNet conv2). fc units see fixed positions: pixels.
- D_gamma: Euclidean distance between the units' class-contribution vectors gamma_i (paper B
  Eq. 2) scaled to unit norm, i.e. a cosine distance: two filters that push the same classes up
  and the same classes down are redundant even if one pushes harder; *how much* a filter matters
  is the contribution index's job, inside its cluster. (Unscaled, the few strongest units sit
  far from everything and k-means only ever separates them: k = 2, one giant cluster.)
- Each distance matrix is divided by its mean over all pairs i != j (its "typical" distance in
  this layer). The two raw distances have unrelated units and spreads that change from layer to
  layer; dividing by the layer mean makes each term average 1, so both count equally and SD is
  comparable across layers. The mean rather than the maximum: one outlier unit (a dead filter)
  would otherwise squash every other pair.

SD is a *dissimilarity*: 0 = identical pattern and identical class contributions; about 2 is a
typical pair of the layer. It is symmetric with a zero diagonal.

- Sum or product: paper B's text says the two distances are *added*; its printed Eq. 3 multiplies
  them. The sum is the default (``combine="sum"``); ``combine="product"`` gives
  SD = D_am / mean(D_am) * D_gamma / mean(D_gamma) (then about 1 is a typical pair, and a pair
  that is identical in either term is at 0).
- Dead filters: a unit whose activation is zero on every image has no pattern and no
  contribution; its AM image is leftover noise and its gamma row numerical dust. Its pattern
  vector and gamma row are set to 0 (``dead=``), so two dead units are at distance 0 (they are
  duplicates of each other) and a dead unit is at the same distance (1 before normalization) from
  every live one.
- What the spectrum amplitude does not see: a contrast-inverted pattern (x -> -x around its mean)
  and a pattern rotated by 180 degrees have exactly the same amplitude spectrum, so D_am counts
  them as identical; together with position, these are the things the conv distance ignores. The
  class-contribution term is what tells such filters apart when their function differs.
- ``gamma_definition`` ("gate" or "paper", see core/interpret/contributions.py) is recorded in ``Similarity``.

**Clusters.** k-means (scikit-learn) on the rows of SD (each unit described by its SD to every
unit of the layer), k searched over 1 .. floor(I/2). Criterion: the silhouette score computed
on SD itself (``metric="precomputed"``), best k wins. The silhouette is undefined for k = 1, so
k = 1 ("no cluster structure") is chosen when no k >= 2 reaches ``min_silhouette`` (0.1: below
it the clusters are no better separated than a random split tends to be). Singleton clusters
are *locked*: a filter with no functional twin is never pruned (paper B Alg. 1).

**Pruning inside clusters** (paper B's cluster and filter levels): a pruning rate r removes
round(r * I) units; each unlocked cluster gives a share proportional to its size (largest
remainders), never its last unit, and inside a cluster the lowest contribution index (paper B
Eq. 7, method "taylor" of ``core.rankings``) goes first.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import plotly.graph_objects as go
from PIL import Image, ImageDraw, ImageFont
from scipy.spatial.distance import pdist, squareform
from sklearn.cluster import KMeans
from sklearn.metrics import silhouette_score
from torch import nn

from .am import AMResult, am_images, to_pil
from .contributions import class_contributions
from ..data import DataSplit
from ..engine import Engine
from ..network.models import weight_module

Progress = Callable[[int, int], None]
MIN_SILHOUETTE = 0.1


@dataclass
class Similarity:
    """SD matrix of one layer and the two distances it combines."""

    layer: str
    sd: np.ndarray  # (I, I) similarity degree: 0 = same function
    am_distance: np.ndarray  # (I, I) normalized AM pattern distance (mean off-diagonal 1)
    gamma_distance: np.ndarray  # (I, I) normalized class-contribution distance (mean off-diagonal 1)
    gamma: np.ndarray  # (I, classes)
    am: AMResult | None = None
    gamma_definition: str = "gate"  # which class-contribution definition gamma uses
    combine: str = "sum"  # how the two distances were combined: "sum" (paper's text) or "product" (its Eq. 3)
    dead: np.ndarray | None = None  # (I,) True for units silent on every image


@dataclass
class Clusters:
    """k-means clusters of one layer's units, ranked inside by the contribution index."""

    layer: str
    labels: np.ndarray  # (I,) cluster id per unit; ids numbered by first unit in cluster order
    k: int
    silhouette: dict[int, float]  # k -> silhouette on SD (k >= 2 that were tried)
    contribution: np.ndarray  # (I,) paper B Eq. 7 contribution index
    members: list[list[int]] = field(default_factory=list)  # per cluster: units, highest contribution first

    @property
    def locked(self) -> list[int]:
        """Units alone in their cluster: never pruned."""
        return sorted(m[0] for m in self.members if len(m) == 1)

    def order(self) -> list[int]:
        """All units grouped by cluster (largest cluster first), highest contribution first inside."""
        return [u for members in self.members for u in members]

    def to_dict(self) -> dict:
        return {"layer": self.layer, "k": self.k, "labels": self.labels.tolist(),
                "clusters": self.members, "locked": self.locked,
                "silhouette": {str(k): v for k, v in self.silhouette.items()},
                "contribution_index": self.contribution.tolist()}


# --- similarity degree ------------------------------------------------------------------------

def unit_rows(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm (an all-zero row stays 0)."""
    vectors = np.asarray(vectors, dtype=np.float64).reshape(len(vectors), -1)
    norm = np.linalg.norm(vectors, axis=1, keepdims=True)
    return np.divide(vectors, norm, out=np.zeros_like(vectors), where=norm > 1e-12)


def pattern_vectors(images: np.ndarray, translation_invariant: bool = True) -> np.ndarray:
    """(I, C, H, W) AM images -> (I, features) unit vectors: centred spectrum amplitudes or centred pixels."""
    images = np.asarray(images, dtype=np.float64)
    if translation_invariant:
        centred = images - images.mean(axis=(-2, -1), keepdims=True)
        return unit_rows(np.abs(np.fft.rfft2(centred)))
    flat = images.reshape(len(images), -1)
    return unit_rows(flat - flat.mean(1, keepdims=True))


def _mean_normalized(distance: np.ndarray) -> np.ndarray:
    n = len(distance)
    mean = distance.sum() / max(1, n * n - n)
    return distance / mean if mean > 0 else distance


COMBINE = ("sum", "product")


def sd_matrix(am_images_: np.ndarray, gamma: np.ndarray, translation_invariant: bool = True,
              combine: str = "sum", dead: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(SD, normalized AM distance, normalized gamma distance) from AM images and gamma (see module doc).

    ``translation_invariant``: True for conv units (compare spectra), False for fc units (pixels).
    ``combine``: "sum" (default, paper B's text) or "product" (its printed Eq. 3).
    ``dead``: (I,) bools, units with no activation: their pattern and gamma are zeroed."""
    if len(am_images_) != len(gamma):
        raise ValueError(f"{len(am_images_)} AM images but {len(gamma)} gamma rows: they must describe the same units")
    if combine not in COMBINE:
        raise ValueError(f"SD combines the distances by 'sum' or 'product', not {combine!r}")
    patterns = pattern_vectors(am_images_, translation_invariant)
    rows = unit_rows(gamma)
    if dead is not None and np.any(dead):
        dead = np.asarray(dead, dtype=bool)
        patterns[dead], rows[dead] = 0.0, 0.0
    d_am = _mean_normalized(squareform(pdist(patterns)))
    d_gamma = _mean_normalized(squareform(pdist(rows)))
    sd = d_am + d_gamma if combine == "sum" else d_am * d_gamma
    return sd, d_am, d_gamma


def dead_units(engine: Engine, layer: str) -> np.ndarray:
    """(I,) True for the units whose activation is exactly zero on every image of the engine's split."""
    return engine.unit_peaks(layer).cpu().numpy() == 0


def similarity_matrix(model: nn.Module, data: DataSplit, layer: str, steps: int = 256, seed: int = 0,
                      progress: Progress | None = None, engine: Engine | None = None,
                      gamma_definition: str = "gate", combine: str = "sum", size: int | None = None) -> Similarity:
    """SD of every pair of units of ``layer`` (paper B Eq. 3), from AM images and class contributions.

    ``gamma_definition``: "gate" or "paper" (core/interpret/contributions.py); ``combine``: "sum" or "product";
    ``size``: the AM images' side (``am_images``; default the model's input).
    Both inputs are cached on disk, so a second call is instant. ``progress`` follows the AM steps."""
    if combine not in COMBINE:
        raise ValueError(f"SD combines the distances by 'sum' or 'product', not {combine!r}")
    engine = engine or Engine(model, data)
    am = am_images(model, layer, steps=steps, seed=seed, progress=progress, size=size)
    gamma = class_contributions(model, data, layer, engine=engine, definition=gamma_definition)
    conv = isinstance(weight_module(model, layer), nn.Conv2d)
    dead = dead_units(engine, layer)
    sd, d_am, d_gamma = sd_matrix(am.images, gamma, translation_invariant=conv, combine=combine, dead=dead)
    return Similarity(layer, sd, d_am, d_gamma, gamma, am, gamma_definition, combine, dead)


# --- clusters -----------------------------------------------------------------------------------

def choose_clusters(sd: np.ndarray, seed: int = 0, min_silhouette: float = MIN_SILHOUETTE,
                    progress: Progress | None = None) -> tuple[np.ndarray, dict[int, float]]:
    """k-means labels on the rows of SD with k in 1..floor(I/2) picked by silhouette (see module doc)."""
    n = len(sd)
    ks = range(2, n // 2 + 1)
    scores: dict[int, float] = {}
    best_labels, best = np.zeros(n, dtype=int), -np.inf
    for done, k in enumerate(ks, 1):
        labels = KMeans(n_clusters=k, n_init=10, random_state=seed).fit_predict(sd)
        if len(set(labels)) > 1:
            scores[k] = float(silhouette_score(sd, labels, metric="precomputed"))
            if scores[k] > best:
                best, best_labels = scores[k], labels
        if progress is not None:
            progress(done, len(ks))
    if best < min_silhouette:
        best_labels = np.zeros(n, dtype=int)
    return best_labels, scores


def group(labels: np.ndarray, contribution: np.ndarray) -> list[list[int]]:
    """Clusters as unit lists (highest contribution first), largest cluster first."""
    clusters = [sorted(np.flatnonzero(labels == c).tolist(), key=lambda u: (-contribution[u], u))
                for c in np.unique(labels)]
    return sorted(clusters, key=lambda m: (-len(m), m[0]))


def cluster_filters(model: nn.Module, data: DataSplit, layer: str, steps: int = 256, seed: int = 0,
                    min_silhouette: float = MIN_SILHOUETTE, similarity: Similarity | None = None,
                    engine: Engine | None = None, progress: Progress | None = None, size: int | None = None) -> Clusters:
    """Paper B Alg. 1 for one layer: SD, k-means with k chosen by silhouette, contribution index inside.

    ``similarity``: a precomputed ``similarity_matrix`` result (else it is computed, cached)."""
    from ..rankings import rank  # method "taylor" = paper B Eq. 7, the one implementation

    engine = engine or Engine(model, data)
    similarity = similarity or similarity_matrix(model, data, layer, steps, seed, engine=engine, size=size)
    labels, scores = choose_clusters(similarity.sd, seed, min_silhouette, progress)
    contribution = np.asarray(rank(model, data, layer=layer, method="taylor", engine=engine).scores)
    members = group(labels, contribution)
    ordered = np.empty(len(labels), dtype=int)
    for cid, units in enumerate(members):
        ordered[units] = cid
    return Clusters(layer, ordered, len(members), scores, contribution, members)


def cluster_removal_order(clusters: Clusters) -> list[int]:
    """Paper B's cluster and filter levels as one removal order: each unlocked cluster gives a share
    proportional to its size, apportioned one unit at a time (D'Hondt: the next unit comes from the cluster
    with the largest size / (removed + 1); ties to the larger, then the earlier cluster), lowest contribution
    index first. Locked singletons never appear and every cluster keeps its last unit, so removing more
    units always removes a superset (the Similar filters page and ``core.plan_from_widths`` share it)."""
    open_ = [list(m) for m in clusters.members if len(m) > 1]  # highest contribution first
    taken = [0] * len(open_)
    order: list[int] = []
    while room := [c for c in range(len(open_)) if taken[c] < len(open_[c]) - 1]:
        c = max(room, key=lambda c: (len(open_[c]) / (taken[c] + 1), len(open_[c]), -c))
        taken[c] += 1
        order.append(open_[c][len(open_[c]) - taken[c]])
    return order


def pruning_selection(clusters: Clusters, rate: float) -> list[int]:
    """Units a pruning rate removes: the first round(rate * I) of ``cluster_removal_order``.

    Locked (singleton) clusters give nothing and every cluster keeps at least one unit, so the
    most that can go is I - k; a higher rate removes that many."""
    if not 0 <= rate <= 1:
        raise ValueError(f"pruning rate must be between 0 and 1 (got {rate})")
    return sorted(cluster_removal_order(clusters)[:int(round(rate * len(clusters.labels)))])


# --- figures ------------------------------------------------------------------------------------

def sd_figure(similarity: Similarity, clusters: Clusters | None = None,
              title: str = "Similarity degree SD (paper B Eq. 3) — 0 = same function") -> go.Figure:
    """SD heatmap, units ordered by cluster (when given) with cluster boundaries drawn."""
    order = clusters.order() if clusters is not None else list(range(len(similarity.sd)))
    labels = [f"unit {u}" for u in order]
    values = similarity.sd[np.ix_(order, order)]
    figure = go.Figure(go.Heatmap(
        z=values, x=labels, y=labels, colorscale="Viridis_r", zmin=0,
        colorbar=dict(title=dict(text="SD", side="right")),
        hovertemplate="%{y} vs %{x}: SD = %{z:.2f}<extra></extra>"))
    return unit_matrix_layout(figure, len(order), title, clusters, "crimson")


def unit_matrix_layout(figure: go.Figure, units: int, title: str, clusters: Clusters | None = None,
                       box_color: str = "crimson") -> go.Figure:
    """A units x units heatmap laid out square, with each cluster's box drawn (units in the clusters' order)."""
    if clusters is not None:
        edge = -0.5
        for members in clusters.members:
            figure.add_shape(type="rect", x0=edge, x1=edge + len(members), y0=edge, y1=edge + len(members),
                             line=dict(color=box_color, width=2))
            edge += len(members)
    figure.update_layout(title=title, height=max(420, 18 * units + 160), font=dict(size=13),
                         xaxis=dict(type="category", tickangle=-60), margin=dict(l=80, r=20, t=60, b=80),
                         yaxis=dict(type="category", autorange="reversed", scaleanchor="x"))
    return figure


def cluster_rows_image(images: np.ndarray, clusters: Clusters, removed: Sequence[int] = (), size: int = 84,
                       per_row: int = 12) -> Image.Image:
    """Paper B Fig. 3: one row per cluster, AM thumbnails by contribution index (highest left),
    the ``removed`` units crossed out in red, locked singletons marked. Long clusters wrap."""
    font, small = ImageFont.load_default(size=17), ImageFont.load_default(size=14)
    removed = set(int(u) for u in removed)
    label_w, pad, caption = 150, 6, 18
    lines = [(c, members[i:i + per_row]) for c, members in enumerate(clusters.members)
             for i in range(0, len(members), per_row)]
    width = label_w + min(per_row, max(len(m) for m in clusters.members)) * (size + pad) + pad
    cell_h = size + caption + pad
    sheet = Image.new("RGB", (width, len(lines) * cell_h + pad + 4 * len(clusters.members)), "white")
    draw = ImageDraw.Draw(sheet)
    y, previous = pad, None
    for c, units in lines:
        if c != previous:  # first line of a cluster: its label, a rule above
            if previous is not None:
                y += 4
                draw.line([(pad, y - 4), (width - pad, y - 4)], fill=(200, 200, 200), width=1)
            count = len(clusters.members[c])
            draw.text((pad, y + 8), f"Cluster {c + 1}", fill="black", font=font)
            note = "locked (alone)" if count == 1 else f"{count} units"
            draw.text((pad, y + 32), note, fill=(110, 110, 110), font=small)
            previous = c
        for i, unit in enumerate(units):
            x = label_w + i * (size + pad)
            tile = to_pil(images[unit], scale=1).convert("RGB").resize((size, size), Image.NEAREST)
            if unit in removed:
                tile = Image.blend(tile, Image.new("RGB", tile.size, "white"), 0.45)
            sheet.paste(tile, (x, y))
            if unit in removed:
                draw.line([(x, y), (x + size, y + size)], fill=(220, 30, 30), width=4)
                draw.line([(x, y + size), (x + size, y)], fill=(220, 30, 30), width=4)
            colour = (220, 30, 30) if unit in removed else (0, 0, 0)
            draw.text((x, y + size + 1), f"unit {unit}", fill=colour, font=small)
        y += cell_h
    return sheet
