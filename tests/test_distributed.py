"""Issue 12: sampled Shapley on Ray workers gives exactly the local result, also when a worker dies.

One local Ray (2 CPUs) serves the module and is always shut down at its end."""
from __future__ import annotations

import os

import numpy as np
import pytest

import core
from core.engine.pools import LocalPool, RayPool, _wait_until_free, model_bytes, model_from_bytes
from core.rankings import rank
from core.rankings import shapley as shapley_module

ray = pytest.importorskip("ray")


@pytest.fixture(scope="module")
def pool(local_ray, model, digits_val):
    with RayPool(core.Engine(model, digits_val), workers=2) as pool:
        yield pool.ready()


CASES = [  # (layer, params): pairs, independent permutations, TMC, early stop, loss payoff, image subsets
    ("conv2", {"samples": 24, "seed": 3}),
    ("conv2", {"samples": 16, "seed": 4, "antithetic": False, "payoff": "loss"}),
    ("fc1", {"samples": 12, "seed": 5, "truncation": 0.02}),
    ("conv1", {"samples": 200, "seed": 6, "top_k": 2}),
    ("conv2", {"samples": 20, "seed": 7, "subset": 60}),
    ("conv2", {"samples": 40, "seed": 8, "subset": "auto", "payoff": "loss"}),
]


@pytest.mark.parametrize("layer,params", CASES)
def test_ray_run_equals_local_run(pool, model, digits_val, layer, params):
    local = rank(model, digits_val, layer, "shapley", cache=False, **params)
    remote = rank(model, digits_val, layer, "shapley", cache=False, pool=pool, **params)
    np.testing.assert_allclose(remote.scores, local.scores, rtol=0, atol=1e-12)
    np.testing.assert_allclose(remote.stderr, local.stderr, rtol=0, atol=1e-12)
    for key in ("permutations", "evaluations", "stopped_early", "subset"):
        assert remote.extra.get(key) == local.extra.get(key), key
    assert remote.extra["workers"] == 2
    if "top_k" in params:
        assert local.extra["stopped_early"], "the case should exercise the early stop between rounds"


def test_worker_that_dies_mid_task_is_replaced_and_the_result_is_unchanged(pool, model, digits_val, tmp_path):
    marker = str(tmp_path / "died-once")

    def dies_once(engine, *args):  # pickled by value: the first task to run kills its worker process
        try:
            os.close(os.open(marker, os.O_CREAT | os.O_EXCL))  # atomic: exactly one worker wins
        except FileExistsError:
            return shapley_module._engine_chain_task(engine, *args)
        os._exit(1)
        return shapley_module._engine_chain_task(engine, *args)

    class DyingPool:  # the real pool, running a task that takes its worker down once
        workers = pool.workers
        identity = pool.identity

        def map(self, fn, arglist, on_result=None):
            assert fn is shapley_module._engine_chain_task
            return pool.map(dies_once, arglist, on_result)

    before = pool.replaced
    params = {"samples": 48, "seed": 11}
    local = rank(model, digits_val, "conv2", "shapley", cache=False, **params)
    remote = rank(model, digits_val, "conv2", "shapley", cache=False, pool=DyingPool(), **params)
    assert os.path.exists(marker)
    assert pool.replaced == before + 1
    np.testing.assert_allclose(remote.scores, local.scores, rtol=0, atol=1e-12)
    assert len(pool.actors) == 2


def test_a_task_error_reaches_the_caller_as_itself(pool):
    def fails(engine):
        raise ValueError("bad unit 99")
    with pytest.raises(ValueError, match="bad unit 99"):
        pool.map(fails, [()])


def test_impossible_requests_are_refused_clearly(pool, model, digits_val):
    engine = core.Engine(model, digits_val)
    with pytest.raises(ValueError, match="has 2 CPUs: ask for at most 2 workers"):
        RayPool(engine, workers=3)
    with pytest.raises(ValueError, match="only 0 of the Ray cluster's CPUs are free"):  # the shared pool holds both
        _wait_until_free(ray, "CPU", 1, seconds=0.3)
    with pytest.raises(ValueError, match="has no GPU"):
        RayPool(engine, workers=1, device="cuda")
    with pytest.raises(ValueError, match="'cpu' or 'cuda'"):
        RayPool(engine, workers=1, device="tpu")
    with pytest.raises(ValueError, match="at least 1"):
        RayPool(engine, workers=0)
    with pytest.raises(ValueError, match="sampled Shapley only"):
        rank(model, digits_val, "conv1", "l1", workers=2)
    with pytest.raises(ValueError, match="sampled Shapley only"):
        rank(model, digits_val, "conv1", "shapley", estimator="exact", workers=2)


def test_rank_with_workers_starts_and_closes_its_own_pool(pool, model, digits_val):
    pool.close()  # (last in the module) free the shared pool's CPUs for the one rank() starts
    local = rank(model, digits_val, "conv1", "shapley", cache=False, samples=8, seed=1)
    remote = rank(model, digits_val, "conv1", "shapley", cache=False, samples=8, seed=1, workers=1)
    np.testing.assert_allclose(remote.scores, local.scores, rtol=0, atol=1e-12)
    assert remote.extra["workers"] == 1
    RayPool(core.Engine(model, digits_val), workers=2).close()  # both CPUs free again: rank() closed its pool


def test_model_bytes_round_trip_keeps_the_weights(model, digits_val):
    copy = model_from_bytes(model_bytes(model))
    for (name, a), (_, b) in zip(model.state_dict().items(), copy.state_dict().items()):
        assert np.array_equal(a.cpu().numpy(), b.cpu().numpy()), name
    engine = core.Engine(model, digits_val)
    assert LocalPool(engine).map(lambda e, off: e.evaluate(off).accuracy, [({},)]) == [engine.evaluate().accuracy]


def test_a_pool_on_other_data_is_refused(model, digits_val, digits_test):
    with pytest.raises(ValueError, match="make the pool from an engine on this model and data"):
        rank(model, digits_val, "conv1", "shapley", samples=4, cache=False, pool=LocalPool(core.Engine(model, digits_test)))
