"""Checkpoints: a good one round-trips; bad ones are refused with a one-line reason, and
the code inside a hostile pickle never runs."""
from __future__ import annotations

import hashlib
import pathlib
import pickle

import pytest
import torch

import core
from core.network.checkpoint import FORMAT, CheckpointError, load_checkpoint, save_checkpoint
from core.network.models import lenet5


class Touch:
    """Unpickling this calls pathlib.Path.touch(sentinel): proof that code ran."""

    def __init__(self, sentinel: pathlib.Path):
        self.sentinel = sentinel

    def __reduce__(self):
        return pathlib.Path.touch, (self.sentinel,)


def refused(source, match: str) -> str:
    with pytest.raises(CheckpointError, match=match) as info:
        load_checkpoint(source)
    message = str(info.value)
    assert "\n" not in message and "Traceback" not in message
    return message


def test_shipped_checkpoint_has_its_metadata(model):
    meta = model.meta
    assert meta.arch == "lenet5" and list(meta.arch_params["widths"]) == [10, 20, 100, 25]
    assert meta.input_shape == (1, 28, 28) and meta.class_names == [str(i) for i in range(10)]
    assert meta.dataset == "digits" and meta.accuracy["test"] >= 0.97
    assert meta.sha256 == hashlib.sha256(core.DEFAULT_CHECKPOINT.read_bytes()).hexdigest()
    assert not model.training


def test_good_checkpoint_round_trips(model, digits_val, tmp_path):
    path = save_checkpoint(model, tmp_path / "sub" / "copy.pt")
    loaded = load_checkpoint(path)
    with torch.no_grad():
        assert torch.equal(loaded(digits_val.images), model(digits_val.images))
    assert loaded.meta.sha256 == hashlib.sha256(path.read_bytes()).hexdigest() != ""
    assert loaded.meta.source == str(path)
    for field in ("arch", "arch_params", "input_shape", "class_names", "mean", "std", "dataset", "accuracy"):
        assert getattr(loaded.meta, field) == getattr(model.meta, field)
    assert not list(tmp_path.glob("sub/*.tmp"))  # the atomic write left nothing behind
    # the same file as uploaded bytes (the app's uploader)
    uploaded = core.load_model(path.read_bytes(), device="cpu")
    assert uploaded.meta.source == "uploaded file" and uploaded.meta.sha256 == loaded.meta.sha256


def test_pruned_model_round_trips(model, digits_val, tmp_path):
    pruned = core.prune_model(model, {"conv2": [0, 1, 2], "fc1": list(range(50))})
    loaded = load_checkpoint(save_checkpoint(pruned, tmp_path / "pruned.pt"))
    assert [layer.units for layer in core.prunable_layers(loaded)] == [10, 17, 50, 25]
    with torch.no_grad():
        assert torch.equal(loaded(digits_val.images), pruned(digits_val.images))


def test_missing_file(tmp_path):
    refused(tmp_path / "nope.pt", "does not exist")


def test_random_bytes_are_refused(tmp_path):
    path = tmp_path / "noise.pt"
    path.write_bytes(torch.randint(0, 256, (4096,), dtype=torch.uint8).numpy().tobytes())
    refused(path, "is not a readable PyTorch checkpoint")


def test_truncated_checkpoint_is_refused(tmp_path):
    raw = core.DEFAULT_CHECKPOINT.read_bytes()
    path = tmp_path / "half.pt"
    path.write_bytes(raw[: len(raw) // 2])
    refused(path, "is not a readable PyTorch checkpoint")


def test_upload_bytes_corrupt_is_refused():
    assert refused(b"\x00\x01 definitely not a checkpoint", "uploaded file is not a readable").startswith(
        "uploaded file")


@pytest.mark.parametrize("writer", ["torch.save", "pickle.dumps"])
def test_pickle_carrying_code_is_refused_and_never_runs(tmp_path, writer):
    sentinel = tmp_path / "code-ran"
    payload = {"format": FORMAT, "meta": {}, "state_dict": {}, "trap": Touch(sentinel)}
    path = tmp_path / "hostile.pt"
    if writer == "torch.save":
        torch.save(payload, path)
    else:
        path.write_bytes(pickle.dumps(payload))
    message = refused(path, "refused")
    assert "could run code" in message
    assert not sentinel.exists()
    refused(path.read_bytes(), "refused uploaded file")  # the same as an upload
    assert not sentinel.exists()
    assert "imports __builtin__.getattr" in message or "imports pathlib.Path.touch" in message
    assert len(message) < 300
    # the file really is hostile: an unsafe load would have run it
    if writer == "torch.save":
        torch.load(path, weights_only=False)
    else:
        pickle.loads(path.read_bytes())
    assert sentinel.exists()


def test_plain_state_dict_is_refused(model, tmp_path):
    path = tmp_path / "state.pt"
    torch.save(model.state_dict(), path)
    refused(path, "is not a Neuron Ranking Explorer checkpoint \\(no metadata\\)")


def good_payload(model) -> dict:
    payload = torch.load(core.DEFAULT_CHECKPOINT, weights_only=True)
    assert payload["format"] == FORMAT
    return payload


def test_weights_for_another_architecture_are_refused(model, tmp_path):
    payload = good_payload(model)  # metadata says lenet5 10-20-100-25
    payload["state_dict"] = lenet5((8, 16, 100, 25)).state_dict()
    path = tmp_path / "mismatch.pt"
    torch.save(payload, path)
    message = refused(path, "does not fit lenet5")
    assert "conv1.0.weight has shape (8, 1, 5, 5), expected (10, 1, 5, 5)" in message


def test_weights_with_other_layer_names_are_refused(model, tmp_path):
    payload = good_payload(model)
    payload["state_dict"] = {f"net.{k}": v for k, v in payload["state_dict"].items()}
    path = tmp_path / "renamed.pt"
    torch.save(payload, path)
    refused(path, "does not hold weights for lenet5 .*missing input.mean")


def test_unknown_architecture_is_refused(model, tmp_path):
    payload = good_payload(model)
    payload["meta"]["arch"] = "transformer9000"
    path = tmp_path / "unknown.pt"
    torch.save(payload, path)
    refused(path, "unknown architecture 'transformer9000'")


def test_incomplete_metadata_is_refused(model, tmp_path):
    payload = good_payload(model)
    del payload["meta"]["class_names"]
    path = tmp_path / "incomplete.pt"
    torch.save(payload, path)
    refused(path, "incomplete metadata")
