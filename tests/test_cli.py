"""The command line: JSON that matches the library, and errors as one line on stderr with exit code 2."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

import core
from core.cli import main, parse_off

from conftest import ROOT


def run_cli(*args: str, timeout: int = 120) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "core", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=timeout)


def test_info_json(model, digits_test, capsys):
    assert main(["info", "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["model"] == "lenet5" and payload["dataset"] == "digits" and payload["images"] == 359
    assert [(l["name"], l["units"]) for l in payload["layers"]] == [("conv1", 10), ("conv2", 20), ("fc1", 100),
                                                                    ("fc2", 25)]
    assert payload["layers"][1]["params"] == 5020 and payload["layers"][1]["flops"] == 320000
    assert payload["params"] == core.model_totals(model)["params"]
    assert payload["accuracy"] == core.evaluate(model, digits_test).accuracy


def test_evaluate_off_json_matches_library(model, digits_test):
    result = run_cli("evaluate", "--off", "conv2:0,3,5", "--json")  # the real entry point, in its own process
    assert result.returncode == 0, result.stderr
    payload = json.loads(result.stdout)
    expected = core.evaluate(model, digits_test, {"conv2": [0, 3, 5]})
    assert payload["off"] == {"conv2": [0, 3, 5]}
    assert payload["accuracy"] == expected.accuracy
    assert payload["full_accuracy"] == core.evaluate(model, digits_test).accuracy
    assert payload["delta"] == pytest.approx(expected.accuracy - payload["full_accuracy"])
    assert payload["delta"] < 0  # turning three conv2 filters off costs accuracy
    assert payload["per_class"]["7"] == pytest.approx(expected.per_class[7])


def test_evaluate_several_layers_in_process(model, digits_val, capsys):
    code = main(["evaluate", "--off", "conv1:1", "--off", "fc1:0,1,2", "--split", "val", "--json"])
    payload = json.loads(capsys.readouterr().out)
    assert code == 0 and payload["off"] == {"conv1": [1], "fc1": [0, 1, 2]}
    assert payload["accuracy"] == core.evaluate(model, digits_val, {"conv1": [1], "fc1": [0, 1, 2]}).accuracy


def test_error_runs_as_one_line_without_traceback():
    result = run_cli("evaluate", "--off", "conv2:99")
    assert result.returncode == 2
    assert result.stderr.strip() == "error: unit 99 does not exist: the layer has units 0..19"
    assert "Traceback" not in result.stderr and result.stdout == ""


@pytest.mark.parametrize("args, message", [
    (["evaluate", "--off", "conv2"], "expected LAYER:UNIT,UNIT"),
    (["evaluate", "--off", "conv2:a,b"], "units must be whole numbers"),
    (["evaluate", "--off", "conv7:1"], "unknown layer 'conv7'"),
    (["info", "--dataset", "mnist", "--data-root", "{tmp}"], "MNIST test files not found in {tmp}"),
    (["info", "--checkpoint", "{tmp}/bad.pt"], "is not a readable PyTorch checkpoint"),
    (["info", "--checkpoint", "{tmp}/absent.pt"], "does not exist"),
    (["info", "--device", "tpu9"], "unknown device"),
])
def test_bad_input_exits_2_with_one_line(tmp_path, capsys, args, message):
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint at all")
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    assert main(args) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")
    assert message.replace("{tmp}", str(tmp_path)) in lines[0] and "Traceback" not in captured.err


def test_parse_off():
    assert parse_off(["conv2:0,3,5", "fc1:7", "conv2:9"]) == {"conv2": [0, 3, 5, 9], "fc1": [7]}


def test_train_writes_a_loadable_checkpoint(tmp_path, digits_test, capsys):
    out = tmp_path / "tiny.pt"
    assert main(["train", "--widths", "6,12,32,16", "--epochs", "4", "--out", str(out), "--device", "cpu"]) == 0
    captured = capsys.readouterr()
    summary = json.loads(captured.out.strip().splitlines()[-1])
    trained = core.load_model(out, device="cpu")
    assert summary["checkpoint"] == str(out) and trained.meta.accuracy == summary["accuracy"]
    assert [l.units for l in core.prunable_layers(trained)] == [6, 12, 32, 16]
    assert trained.meta.dataset == "digits" and trained.meta.arch_params["widths"] == [6, 12, 32, 16]
    accuracy = core.evaluate(trained, digits_test).accuracy
    assert accuracy == pytest.approx(summary["accuracy"]["test"])
    assert accuracy > 0.5  # four epochs already learn a lot (chance is 0.1)
    assert "train" in captured.err  # the tqdm progress bar


def test_train_rejects_bad_widths(capsys):
    assert main(["train", "--widths", "6,12,32", "--epochs", "1"]) == 2
    assert capsys.readouterr().err.strip() == "error: --widths: lenet5 takes 4 widths (conv1, conv2, fc1, fc2)"
