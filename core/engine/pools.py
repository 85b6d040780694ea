"""Engine work spread over Ray workers (actors), for sampled Shapley and the curves.

A pool runs ``fn(engine, *args)`` for a list of argument tuples and returns the results in
order. ``LocalPool`` runs them here on one engine; ``RayPool`` runs them on Ray actors, each
of which loads the model from checkpoint bytes put once in Ray's object store and builds its
own Engine (prefix caches included). Task j goes to worker j mod W, so the work done, and a
deterministic fn's result, do not depend on the number of workers. A worker that dies is
replaced and its unfinished tasks run again on the new one.

    with RayPool(engine, workers=2) as pool:           # a local Ray, or ray_address="ray://..."
        rank(model, data, "conv2", "shapley", pool=pool)

Ray is imported only when a RayPool is made (it is slow to import and not needed otherwise).
"""
from __future__ import annotations

import io
import os
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from torch import nn

from ..network.checkpoint import checkpoint_bytes, load_checkpoint
from ..data import DataSplit
from .masking import Engine
from .state import check_identity
from ..network.models import is_staged


class WorkerError(RuntimeError):
    """Ray workers could not do the work (did not start, or kept dying); the message says which."""


OnResult = Callable[[int, Any], None]  # (task index, its result), in completion order
START_TIMEOUT = 300.0  # seconds for the workers to load the model
MAX_REPLACEMENTS = 3  # per worker slot; a worker that keeps dying is a real error, not bad luck


class LocalPool:
    """Runs the tasks one after another on an engine in this process."""

    workers = 1

    def __init__(self, engine: Engine):
        self.engine = engine
        self.data_key = engine.data.key

    @property
    def identity(self) -> dict[str, str]:
        """Its engine's identity now (the tasks run on that engine, with its current weights)."""
        return self.engine.identity()

    def map(self, fn: Callable, arglist: Sequence[tuple], on_result: OnResult | None = None) -> list:
        results = []
        for j, args in enumerate(arglist):
            results.append(fn(self.engine, *args))
            if on_result:
                on_result(j, results[-1])
        return results

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def model_bytes(model: nn.Module) -> bytes:
    """Our models as checkpoint bytes; any other model (torchvision, pruned) as its pickled module."""
    if is_staged(model):
        return b"ckpt" + checkpoint_bytes(model)
    buffer = io.BytesIO()
    torch.save(model, buffer)
    return b"pick" + buffer.getvalue()


def model_from_bytes(blob: bytes) -> nn.Module:
    kind, raw = blob[:4], blob[4:]
    if kind == b"ckpt":
        return load_checkpoint(raw)
    # a pickled module is only ever bytes that model_bytes wrote in this run's driver, never user input
    return torch.load(io.BytesIO(raw), weights_only=False).eval()


class _EngineWorker:
    """A Ray actor holding one Engine (its model loaded from the object store)."""

    def __init__(self, model_blob: bytes, data: DataSplit, precision: str, batch_size: int, device: str):
        model = model_from_bytes(model_blob).to(device)
        extra = {} if precision == "float32" else {"precision": precision}
        self.engine = Engine(model, data, batch_size=batch_size, **extra)

    def run(self, fn: Callable, args: tuple) -> Any:
        return fn(self.engine, *args)

    def pid(self) -> int:
        return os.getpid()


def ray_init(address: str | None = None, num_cpus: int | None = None):
    """The ray module, connected: to ``address`` (or $RAY_ADDRESS), else a local Ray started here."""
    import ray

    if not ray.is_initialized():
        # the workers may not have this code (a remote cluster, another working directory): ship the package
        kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False,
                                  "runtime_env": {"py_modules": [str(Path(__file__).resolve().parents[1])]}}
        if not address and not os.environ.get("RAY_ADDRESS"):
            kwargs["num_cpus"] = num_cpus
        try:
            ray.init(address=address, **kwargs)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            where = address or os.environ.get("RAY_ADDRESS") or "a local Ray"
            raise ValueError(f"could not connect to Ray at {where}: {str(exc).splitlines()[0]}") from None
    return ray


def _wait_until_free(ray, resource: str, needed: float, seconds: float = 20.0) -> None:
    """A worker Ray cannot place would wait forever: wait a little (a pool just closed frees its CPUs
    a moment later), then refuse, saying what is busy."""
    deadline = time.monotonic() + seconds
    while (free := ray.available_resources().get(resource, 0)) < needed - 1e-9:
        if time.monotonic() > deadline:
            raise ValueError(f"only {free:g} of the Ray cluster's {resource}s are free ({needed:g} needed): "
                             f"other work (another pool?) holds the rest; close it or ask for fewer workers")
        time.sleep(0.2)


class RayPool:
    """Runs tasks on ``workers`` Ray actors, each with its own copy of the engine's model and data.

    ``device``: where the workers' engines run, "cpu" or "cuda" (default: where ``engine`` runs, so
    the numbers match a local run). A CPU worker takes 1 CPU; CUDA workers share the cluster's GPUs
    (1 GPU each when there are enough, else an equal fraction: 2 workers on 1 GPU take half each).
    ``workers``: how many actors (default: one per CPU, or per GPU for "cuda").
    ``address``: a Ray cluster ("ray://host:10001", "auto"); by default $RAY_ADDRESS, else a local Ray."""

    def __init__(self, engine: Engine, workers: int | None = None, address: str | None = None,
                 device: str | None = None):
        if workers is not None and int(workers) < 1:
            raise ValueError(f"workers must be at least 1, got {workers}")
        device = device or engine.device.type
        if device not in ("cpu", "cuda"):
            raise ValueError(f"Ray workers run on 'cpu' or 'cuda', not {device!r}")
        ray = ray_init(address)
        resources = ray.cluster_resources()
        cpus, gpus = int(resources.get("CPU", 0)), int(resources.get("GPU", 0))
        if device == "cuda":
            if not gpus:
                raise ValueError("device='cuda' but the Ray cluster has no GPU; use device='cpu'")
            self.workers = int(workers) if workers is not None else gpus
            share = min(1.0, gpus / self.workers)
            need = {"num_cpus": 0, "num_gpus": share}
            _wait_until_free(ray, "GPU", share * self.workers)
        else:
            self.workers = int(workers) if workers is not None else (cpus or 1)
            if cpus < self.workers:
                raise ValueError(f"the Ray cluster has {cpus} CPUs: ask for at most {cpus} workers, not {self.workers}")
            need = {"num_cpus": 1, "num_gpus": 0}
            _wait_until_free(ray, "CPU", self.workers)
        self.device = device
        self._ray = ray
        self._actor_class = ray.remote(**need)(_EngineWorker)
        self._model = ray.put(model_bytes(engine.model))
        self._data = ray.put(engine.data)
        self._precision = getattr(engine, "precision", "float32")
        self._batch_size = engine.batch_size
        self.data_key = engine.data.key
        # what the workers evaluate on: the engine's weights, data and precision when the pool was made
        # (every consumer compares it with its own engine's, check_pool)
        self.identity = engine.identity()
        self.actors = [self._start() for _ in range(self.workers)]
        self.replaced = 0  # workers replaced after dying (tests and the benchmark read it)
        self.round_seconds: list[float] = []  # wall time of each map call

    def _start(self):
        return self._actor_class.remote(self._model, self._data, self._precision, self._batch_size, self.device)

    def ready(self, timeout: float = START_TIMEOUT) -> "RayPool":
        """Wait until every worker has loaded its model (so timings measure work, not start-up)."""
        from ray.exceptions import GetTimeoutError

        try:
            self._ray.get([actor.pid.remote() for actor in self.actors], timeout=timeout)
        except GetTimeoutError:
            raise WorkerError(f"the Ray workers did not start within {timeout:.0f} s; is the cluster busy?") from None
        return self

    def map(self, fn: Callable, arglist: Sequence[tuple], on_result: OnResult | None = None) -> list:
        from ray.exceptions import RayActorError, RayTaskError

        start = time.perf_counter()
        results: list[Any] = [None] * len(arglist)
        failures = [0] * self.workers
        pending = {}
        for j, args in enumerate(arglist):
            slot = j % self.workers
            pending[self.actors[slot].run.remote(fn, args)] = (j, slot, self.actors[slot])
        while pending:
            ready, _ = self._ray.wait(list(pending), num_returns=1)
            j, slot, actor = pending.pop(ready[0])
            try:
                results[j] = self._ray.get(ready[0])
            except RayTaskError as exc:  # the task itself raised: the same error as a local run
                raise exc.as_instanceof_cause() from None
            except RayActorError:
                if self.actors[slot] is actor:  # first news of this death: start a fresh worker
                    failures[slot] += 1
                    if failures[slot] > MAX_REPLACEMENTS:
                        raise WorkerError(f"Ray worker {slot} died {failures[slot]} times; giving up") from None
                    self.actors[slot] = self._start()
                    self.replaced += 1
                pending[self.actors[slot].run.remote(fn, arglist[j])] = (j, slot, self.actors[slot])
                continue
            if on_result:
                on_result(j, results[j])
        self.round_seconds.append(time.perf_counter() - start)
        return results

    def close(self) -> None:
        for actor in self.actors:
            self._ray.kill(actor)
        self.actors = []
        self._model = self._data = None  # the object store frees its copies once no reference is left

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def check_pool(pool, engine: Engine) -> None:
    """Refuse (ValueError, one line) a pool that does not evaluate on ``engine``'s model weights, data content
    and precision: its results would be another model's numbers under this one's name (and cache key)."""
    if pool is None or (isinstance(pool, LocalPool) and pool.engine is engine):
        return
    check_identity(getattr(pool, "identity", None), engine.identity())


def engine_pool(engine: Engine, workers: int | None = None, ray_address: str | None = None) -> LocalPool | RayPool:
    """A RayPool when workers or an address are given, else a LocalPool on ``engine``. The workers run
    where the engine runs (RayPool's default), so a Ray run matches a local one."""
    if workers is None and not ray_address:
        return LocalPool(engine)
    return RayPool(engine, workers, ray_address)


__all__ = ["LocalPool", "RayPool", "WorkerError", "engine_pool", "check_pool", "model_bytes", "model_from_bytes", "ray_init"]
