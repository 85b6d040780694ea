"""Rankings of the units of one layer: a score per unit, higher = more important.

    from core.rankings import rank
    r = rank(model, data, layer="conv2", method="shapley", estimator="sampled", samples=200)
    r.scores, r.stderr, r.order(), r.lowest(5), r.label

Methods (one module each): ``shapley`` (paper A, exact / truncated / sampled), ``switches``
(paper A's Dirichlet importance switches), ``l1`` / ``l2`` (weight norms), ``taylor`` (paper B
Eq. 7), ``activation`` (mean activation), ``random`` (seeded); the semivalues ``banzhaf`` (exact /
MSR-sampled), ``beta_shapley`` (alpha, beta; exact / sampled) and ``loo`` (leave-one-out). Every method module has
``DEFAULTS`` (its parameters), ``label(params)``, ``compute(engine, layer, progress, **params)``
-> (scores, stderr or None, extra dict) and optionally ``normalize(params, engine)``.
Results are cached on disk (core/engine/cache.py), keyed by the weights, the data, layer, method and
parameters, so a repeated request is instant.
"""
from __future__ import annotations

import inspect
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
from torch import nn

from ..engine.cache import cached_entry
from ..data import DataSplit, data_digest
from ..engine.pools import check_pool, engine_pool
from ..engine import Engine
from ..network.models import weights_digest
from . import activation, banzhaf, beta_shapley, loo, magnitude, random, shapley, switches, taylor

Progress = Callable[[int, int], None]  # (done, total)

METHODS: dict[str, Any] = {  # name -> module (or object) with DEFAULTS, label, compute
    "shapley": shapley, "switches": switches, "l1": magnitude.L1, "l2": magnitude.L2,
    "taylor": taylor, "activation": activation, "random": random,
    "banzhaf": banzhaf, "beta_shapley": beta_shapley, "loo": loo,  # semivalues (issue 19)
}
CACHE_VERSION = 2  # bump when a method's numbers change meaning
# 2: switches train on the training split with KL / n_train, in epochs; Shapley early stop is Bonferroni-corrected


@dataclass
class Ranking:
    """Scores of every unit of one layer by one method (higher = more important)."""

    layer: str
    method: str
    params: dict
    scores: np.ndarray
    stderr: np.ndarray | None = None
    seed: int | None = None
    seconds: float = 0.0  # wall time of the computation (not of a cache hit)
    label: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    cached: bool = False  # came from the disk cache

    def order(self) -> np.ndarray:
        """Unit indices, most important first (ties keep unit order)."""
        return np.argsort(-self.scores, kind="stable")

    def lowest(self, k: int) -> list[int]:
        """The k least important units, least important first."""
        return [int(i) for i in self.order()[::-1][:max(0, k)]]

    def top(self, k: int) -> list[int]:
        return [int(i) for i in self.order()[:max(0, k)]]

    def to_dict(self) -> dict:
        """JSON-able summary (used by the CLI)."""
        return {"layer": self.layer, "method": self.method, "label": self.label, "params": self.params,
                "seed": self.seed, "seconds": self.seconds, "cached": self.cached,
                "scores": self.scores.tolist(), "stderr": None if self.stderr is None else self.stderr.tolist(),
                "order": self.order().tolist(),
                "extra": {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in self.extra.items()}}


def method_params(method: str, params: dict, engine: Engine | None = None) -> dict:
    """The full parameter set of a method (defaults filled in); unknown names are refused."""
    if method not in METHODS:
        raise ValueError(f"unknown ranking method {method!r}; choose one of {', '.join(METHODS)}")
    module = METHODS[method]
    unknown = sorted(set(params) - set(module.DEFAULTS))
    if unknown:
        known = ", ".join(module.DEFAULTS) or "none"
        raise ValueError(f"{method} has no parameter {unknown[0]!r} (its parameters: {known})")
    full = {**module.DEFAULTS, **params}
    normalize = getattr(module, "normalize", None)
    return normalize(full, engine) if normalize else full


def rank(model: nn.Module, data: DataSplit, layer: str, method: str = "l1", progress: Progress | None = None,
         cache: bool = True, engine: Engine | None = None, train: DataSplit | Engine | None = None,
         precision: str | None = None, workers: int | None = None, ray_address: str | None = None,
         pool=None, **params) -> Ranking:
    """Rank the units of ``layer`` by ``method`` (see METHODS); ``params`` are the method's options.

    ``data``: the validation split every accuracy is measured on. ``train``: the training split
    (a DataSplit or an Engine on it) for methods that learn (importance switches, paper A); when
    it is not given it is loaded as ``load_dataset(data.name, "train")``.
    ``engine``: an existing Engine for this model and data (reuses its activation caches).
    ``cache``: read/write the on-disk cache (False always recomputes and stores nothing).
    ``workers`` / ``ray_address``: run sampled Shapley on that many Ray workers / on that Ray cluster
    (``core.engine.pools.RayPool``; a local Ray is started when no address is given), or on an existing
    ``pool``. Same seed = same result as a local run, so the cache serves both.
    ``precision``: "float32" (default), "bfloat16" or "float16" for the masked evaluations (see
    ``Engine``); with an ``engine`` given, the engine's precision is used. A reduced precision is part of
    the cache key and of the label, and ``Ranking.extra["precision"]`` always says which was used."""
    if engine is None:
        engine = Engine(model, data, precision=precision or "float32")
    elif precision is not None and precision != engine.precision:
        raise ValueError(f"precision {precision!r} differs from the given engine's {engine.precision!r}")
    if engine.model is not model or engine.data is not data:
        raise ValueError("the engine given does not hold this model and data")
    engine.units(layer)  # validates the layer name
    params = method_params(method, params, engine)
    module = METHODS[method]
    kwargs: dict[str, Any] = {}
    train_key: dict[str, str] = {}
    uses_train = getattr(module, "uses_training_split", None)
    if uses_train is not None and uses_train(params):
        train_engine = _train_engine(model, data, train)
        kwargs["train_engine"] = train_engine
        train_key = {"train_data": train_engine.data.key, "train_digest": data_digest(train_engine.data)}
    if getattr(module, "USES_COALITION_TABLE", False):
        kwargs["table_cache"] = cache  # the shared table of all coalitions follows the ranking cache's setting

    distributed = pool is not None or workers is not None or bool(ray_address)
    if distributed and not (method == "shapley" and params["estimator"] == "sampled"):
        raise ValueError("Ray workers run sampled Shapley only (estimator='sampled'); the other methods run here")
    check_pool(pool, engine)  # a pool on other weights, data or precision: refused before anything is cached
    ran_on: dict[str, int] = {}  # Ray workers of this call's computation (not stored in the cache)

    def compute():
        start = time.perf_counter()
        if distributed:
            # a pool passed in stays open for the caller; one made here is closed here
            with nullcontext(pool) if pool is not None else engine_pool(engine, workers, ray_address) as run_on:
                scores, stderr, extra = module.compute(engine, layer, progress, pool=run_on, **params, **kwargs)
                ran_on["workers"] = run_on.workers
        else:
            scores, stderr, extra = module.compute(engine, layer, progress, **params, **kwargs)
        arrays = {"scores": np.asarray(scores, dtype=np.float64)}
        if stderr is not None:
            arrays["stderr"] = np.asarray(stderr, dtype=np.float64)
        arrays.update({f"extra.{k}": np.asarray(v) for k, v in extra.items() if isinstance(v, np.ndarray)})
        meta = {"seconds": time.perf_counter() - start,
                "extra": {k: v for k, v in extra.items() if not isinstance(v, np.ndarray)}}
        return arrays, meta

    if cache:
        key = {"version": CACHE_VERSION, "checkpoint": getattr(getattr(model, "meta", None), "sha256", ""),
               "weights": weights_digest(model), "data": data.key, "data_digest": data_digest(data),
               "layer": layer, "method": method, "params": params, **train_key}
        if engine.precision != "float32":  # float32 keys stay as they were, so existing entries stay valid
            key["precision"] = engine.precision
        arrays, meta, hit = cached_entry("rankings", key, compute)
        if hit and progress:
            progress(1, 1)
    else:
        arrays, meta = compute()
        hit = False
    extra = {k[len("extra."):]: v for k, v in arrays.items() if k.startswith("extra.")}
    extra.update(meta.get("extra", {}))
    extra.update(ran_on)
    extra["precision"] = engine.precision
    label = ran_label(module, params, extra) + ("" if engine.precision == "float32" else f" [{engine.precision}]")
    return Ranking(layer, method, params, arrays["scores"], arrays.get("stderr"), params.get("seed"),
                   float(meta["seconds"]), label, extra, cached=hit)


def ran_label(module, params: dict, extra: dict | None = None) -> str:
    """The label of what ran: the method's own label (given ``extra`` when it takes it, e.g. sampled Shapley's
    permutations after an early stop), plus every parameter that differs from its default and that the
    method's label does not name (``LABELLED``), so two rankings that differ never share a label."""
    takes_extra = "extra" in inspect.signature(module.label).parameters
    text = module.label(params, extra) if takes_extra else module.label(params)
    named = getattr(module, "LABELLED", ())
    rest = [f"{k}={params[k]:g}" if isinstance(params[k], float) else f"{k}={params[k]}"
            for k, default in module.DEFAULTS.items()
            if k not in named and k in params and params[k] != default]
    return f"{text} [{', '.join(rest)}]" if rest else text


def _train_engine(model: nn.Module, data: DataSplit, train: DataSplit | Engine | None) -> Engine:
    """An Engine on the training split (given, or loaded by the validation split's dataset name)."""
    if isinstance(train, Engine):
        if train.model is not model:
            raise ValueError("the training engine given does not hold this model")
        return train
    if train is None:
        from ..data import load_dataset

        try:
            train = load_dataset(data.name, "train")
        except Exception as exc:  # noqa: BLE001 - any loading failure gets the same advice
            raise ValueError(f"switches train on the training split of {data.name} and it could not be loaded "
                             f"({exc}); pass it as rank(..., train=core.load_dataset(..., 'train')) or use "
                             f"split='val'") from None
    return Engine(model, train)


__all__ = ["Ranking", "rank", "METHODS", "method_params", "ran_label", "weights_digest", "data_digest"]
