"""Issue 12: pruning curves, the sensitivity grid and the Pr search on Ray workers equal the local run
exactly, and the CLI's --workers / --ray-address / --subset.

One local Ray (2 CPUs) serves the module and is always shut down at its end; one 2-worker pool is
shared by the library tests and closed before the CLI tests (each of which starts its own pool)."""
from __future__ import annotations

import json

import numpy as np
import pytest

import core
from core import compress as plans
from core.cli import main
from core.pruning.curves import _masks_task, _order_blocks, removal_order, random_scores
from core.engine.pools import RayPool

ray = pytest.importorskip("ray")


@pytest.fixture(scope="module")
def engine(model, digits_val):
    return core.Engine(model, digits_val)


@pytest.fixture(scope="module")
def pool(local_ray, engine):
    with RayPool(engine, workers=2) as pool:
        yield pool.ready()


@pytest.fixture(scope="module")
def l1(model, digits_val, engine):
    return plans.layer_rankings(model, digits_val, "l1", engine=engine)


def same(a, b) -> None:
    assert np.array_equal(np.asarray(a), np.asarray(b)), (a, b)


def test_the_calls_do_not_depend_on_the_pool():
    orders = [removal_order(random_scores(20, s)) for s in range(30)]
    blocks = _order_blocks("conv2", orders, np.arange(21), full=True)
    assert [len(b[1]) for b in blocks] == [12, 12, 6]  # whole curves, up to 256 masks a call
    assert [b[3] for b in blocks] == [True, False, False]  # the unmasked row rides in the first call


def test_layer_curve_and_random_band_equal_local(pool, engine, l1):
    local, remote = core.layer_curve(engine, "conv2", l1["conv2"]), core.layer_curve(engine, "conv2", l1["conv2"],
                                                                                    pool=pool)
    same(remote.accuracy, local.accuracy)
    same(remote.loss, local.loss)
    assert remote.removed == local.removed
    rounds = len(pool.round_seconds)
    local = core.random_band(engine, "conv2", seeds=30, direction="most")  # 3 calls, both workers busy
    remote = core.random_band(engine, "conv2", seeds=30, direction="most", pool=pool)
    assert len(pool.round_seconds) == rounds + 1
    same(remote.accuracy, local.accuracy)
    same(remote.loss, local.loss)
    assert remote.removed == local.removed and remote.seeds == local.seeds


def test_curve_set_sensitivity_and_network_curves_equal_local(pool, engine, l1):
    local = core.curve_set(engine, "fc1", [l1["fc1"]], seeds=5)
    remote = core.curve_set(engine, "fc1", [l1["fc1"]], seeds=5, pool=pool)
    assert remote.full_accuracy == local.full_accuracy == engine.evaluate().accuracy
    same(remote.curves[0].accuracy, local.curves[0].accuracy)
    same(remote.random.accuracy, local.random.accuracy)

    local = core.network_curves(engine, [l1], rates=[0, 0.3, 0.6], seeds=5)
    remote = core.network_curves(engine, [l1], rates=[0, 0.3, 0.6], seeds=5, pool=pool)
    same(remote.curves[0].accuracy, local.curves[0].accuracy)
    same(remote.curves[0].loss, local.curves[0].loss)
    same(remote.random.accuracy, local.random.accuracy)
    assert remote.curves[0].masks == local.curves[0].masks

    seen = []
    local = core.sensitivity_grid(engine, [l1], rates=[0.2, 0.5], seeds=5)
    remote = core.sensitivity_grid(engine, [l1], rates=[0.2, 0.5], seeds=5, pool=pool,
                                   progress=lambda d, t: seen.append((d, t)))
    same(remote.accuracy, local.accuracy)
    assert remote.labels == local.labels and seen[-1][0] == seen[-1][1]


def test_plan_from_pr_equals_local(pool, engine, l1):
    for pr in (0.5, 3.0):
        local = core.plan_from_pr(engine, l1, pr)
        remote = core.plan_from_pr(engine, l1, pr, pool=pool)
        assert remote.off == local.off and remote.details == local.details
    assert remote.off  # 3 points of budget removes something


def test_a_task_on_the_pool_is_the_local_call(pool, engine):
    args = _order_blocks("conv1", [removal_order(random_scores(10, 1))], np.arange(11))[0]
    local, remote = _masks_task(engine, *args), pool.map(_masks_task, [args])[0]
    same(remote[0], local[0])
    same(remote[1], local[1])


def test_cli_refuses_workers_for_other_methods_in_one_line(capsys):
    assert main(["rank", "--layer", "conv2", "--method", "l1", "--workers", "2"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: --workers and --ray-address run sampled shapley only") and "\n" not in err
    assert main(["rank", "--layer", "conv2", "--exact", "--workers", "2"]) == 2
    assert main(["rank", "--layer", "conv2", "--samples", "8", "--workers", "0"]) == 2
    assert "--workers must be at least 1" in capsys.readouterr().err
    assert main(["rank", "--layer", "conv2", "--method", "l1", "--subset", "40"]) == 2
    assert main(["compress", "--plan", "5-7-45-20", "--workers", "2", "--recipe", "none"]) == 2
    assert "apply to --pr plans" in capsys.readouterr().err


# --- the CLI with its own pools (last: the shared pool is closed first, to free the Ray's 2 CPUs) --------


def _run_json(capsys, argv: list[str], path) -> dict:
    assert main([*argv, "--json", str(path)]) == 0, capsys.readouterr().err
    return json.loads(path.read_text())


def test_cli_rank_and_curve_with_workers_give_the_same_numbers(pool, capsys, tmp_path):
    pool.close()
    rank = ["rank", "--layer", "conv2", "--samples", "8", "--seed", "3", "--no-cache"]
    local = _run_json(capsys, rank, tmp_path / "local.json")
    remote = _run_json(capsys, [*rank, "--workers", "2"], tmp_path / "remote.json")
    assert "on 2 Ray workers" in capsys.readouterr().out
    np.testing.assert_allclose(remote["scores"], local["scores"], rtol=0, atol=1e-12)
    np.testing.assert_allclose(remote["stderr"], local["stderr"], rtol=0, atol=1e-12)

    curve = ["curve", "--layer", "conv2", "--methods", "shapley,l1", "--samples", "4", "--split", "val"]
    local = _run_json(capsys, curve, tmp_path / "local-curve.json")
    remote = _run_json(capsys, [*curve, "--workers", "2"], tmp_path / "remote-curve.json")
    assert remote["workers"] == 2 and "on 2 Ray workers" in capsys.readouterr().out
    assert [c["label"] for c in remote["curves"]] == [c["label"] for c in local["curves"]]
    for a, b in zip(remote["curves"], local["curves"]):
        assert a["accuracy"] == b["accuracy"] and a["removed"] == b["removed"]
    assert remote["random"]["accuracy"] == local["random"]["accuracy"]
    assert remote["full_accuracy"] == local["full_accuracy"]


def test_cli_compress_pr_with_workers_gives_the_same_plan(capsys, tmp_path):
    argv = ["compress", "--pr", "1", "--recipe", "none"]
    local = _run_json(capsys, argv, tmp_path / "local.json")
    remote = _run_json(capsys, [*argv, "--workers", "2"], tmp_path / "remote.json")
    assert remote["plan"] == local["plan"]


def test_cli_rank_subset_prints_both_errors(capsys):
    assert main(["rank", "--layer", "conv1", "--samples", "8", "--subset", "40", "--no-cache"]) == 0
    out = capsys.readouterr().out
    assert "image subset: 40 of 359 images" in out
    assert "mean over units: image" in out and "permutation" in out
