"""Issue 20: datasets found where they live (torchvision's nesting, Debian's flat folder, $NRE_DATA_ROOT),
the embedded ``fashion`` subset and the shipped Fashion-MNIST checkpoint.

The loader tests write files in the real idx.gz format into temporary folders and point the system
folder there; the tests that need the full Fashion-MNIST (Debian's dataset-fashion-mnist) skip when
/usr/share/datasets/fashion-mnist is absent."""
from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import core
from core.data import DataError, load_dataset, locate, sources

from test_data import write_idx, write_mnist

ROOT = Path(__file__).resolve().parents[1]
DEBIAN_FASHION = Path("/usr/share/datasets/fashion-mnist")
FULL = pytest.mark.skipif(not (DEBIAN_FASHION / "t10k-images-idx3-ubyte.gz").is_file(),
                          reason="the full Fashion-MNIST is absent (apt-get install dataset-fashion-mnist)")
CHECKPOINT = ROOT / "assets" / "lenet5_fashionmnist.pt"


@pytest.fixture
def nowhere(tmp_path, monkeypatch):
    """No dataset anywhere: an empty working folder, no $NRE_DATA_ROOT, an empty system folder."""
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.delenv("NRE_DATA_ROOT", raising=False)
    monkeypatch.setattr(locate, "SYSTEM_DATA", tmp_path / "system")
    return tmp_path


def write_flat(folder: Path, seed: int, n_train: int = 24, n_test: int = 12) -> dict:
    """Debian's layout: the four idx.gz files directly in the folder (no FashionMNIST/raw)."""
    rng = np.random.default_rng(seed)
    arrays = {"train": (rng.integers(0, 256, (n_train, 28, 28)), np.arange(n_train) % 10),
              "test": (rng.integers(0, 256, (n_test, 28, 28)), (np.arange(n_test) * 7) % 10)}
    for part, prefix in (("train", "train"), ("test", "t10k")):
        write_idx(folder / f"{prefix}-images-idx3-ubyte", arrays[part][0], gz=True)
        write_idx(folder / f"{prefix}-labels-idx1-ubyte", arrays[part][1], gz=True)
    return arrays


def pixels(data) -> np.ndarray:
    return (data.images[:, 0] * 255).round().to(torch.uint8).numpy()


def test_debian_flat_system_folder_is_found(nowhere):
    arrays = write_flat(nowhere / "system" / "fashion-mnist", seed=1)
    test = load_dataset("fashionmnist", "test")
    assert np.array_equal(pixels(test), arrays["test"][0]) and test.labels.tolist() == arrays["test"][1].tolist()
    assert len(load_dataset("fashionmnist", "train")) + len(load_dataset("fashionmnist", "val")) == 24
    assert core.available_datasets() == {"fashionmnist": nowhere / "system" / "fashion-mnist"}


def test_torchvision_nesting_under_the_given_root(nowhere):
    arrays = write_mnist(nowhere / "given", "FashionMNIST", gz=True)
    write_flat(nowhere / "system" / "fashion-mnist", seed=2)  # found later in the search: not used
    test = load_dataset("fashionmnist", "test", root=nowhere / "given")
    assert np.array_equal(pixels(test), arrays["test"][0])
    assert core.available_datasets(nowhere / "given")["fashionmnist"] == nowhere / "given" / "FashionMNIST" / "raw"


def test_nre_data_root_then_data_then_system(nowhere, monkeypatch):
    system = write_flat(nowhere / "system" / "fashion-mnist", seed=3)
    local = write_flat(nowhere / "work" / "data", seed=4)  # ./data, flat
    env = write_flat(nowhere / "env" / "FashionMNIST" / "raw", seed=5)  # torchvision's nesting
    assert np.array_equal(pixels(load_dataset("fashionmnist", "test")), local["test"][0])
    monkeypatch.setenv("NRE_DATA_ROOT", str(nowhere / "env"))
    assert np.array_equal(pixels(load_dataset("fashionmnist", "test")), env["test"][0])
    assert core.search_folders("fashionmnist")[:4] == [nowhere / "env" / "FashionMNIST" / "raw", nowhere / "env",
                                                        Path("data/FashionMNIST/raw"), Path("data")]
    monkeypatch.delenv("NRE_DATA_ROOT")
    for path in (nowhere / "work" / "data").iterdir():
        path.unlink()
    assert np.array_equal(pixels(load_dataset("fashionmnist", "test")), system["test"][0])


def test_a_missing_dataset_is_one_line_naming_where_it_looked(nowhere):
    with pytest.raises(DataError) as info:
        load_dataset("fashionmnist", "test", root=nowhere / "mine")
    message = str(info.value)
    assert "\n" not in message
    for folder in (nowhere / "mine" / "FashionMNIST" / "raw", nowhere / "mine", Path("data"),
                   nowhere / "system" / "fashion-mnist"):
        assert str(folder) in message
    assert "t10k-images-idx3-ubyte" in message and "dataset-fashion-mnist" in message
    assert core.available_datasets() == {}


def test_cli_names_where_it_looked(nowhere):
    result = subprocess.run([sys.executable, "-m", "core", "info", "--dataset", "fashionmnist", "--data-root",
                             str(nowhere / "mine")], capture_output=True, text=True, cwd=ROOT,
                            env={**os.environ, "OMP_NUM_THREADS": "1", "NRE_DATA_ROOT": "",
                                 "NRE_SYSTEM_DATA": str(nowhere / "system")})
    assert result.returncode == 2 and "Traceback" not in result.stderr
    line = result.stderr.strip()
    assert line.count("\n") == 0 and "FashionMNIST test files not found in" in line and str(nowhere / "mine") in line


def test_idx_files_are_read_once(nowhere):
    write_flat(nowhere / "system" / "fashion-mnist", seed=6)
    sources._read_idx_cached.cache_clear()
    for split in ("train", "val", "test", "val"):
        load_dataset("fashionmnist", split)
    info = sources._read_idx_cached.cache_info()
    assert info.misses == 4 and info.hits == 4  # 4 files, each read once


# --- the embedded subset --------------------------------------------------------------------------

def test_embedded_subset_matches_its_checksum_and_is_balanced():
    content = sources.FASHION_SUBSET.read_bytes()
    assert hashlib.sha256(content).hexdigest() == sources.FASHION_SHA256
    assert len(content) < 2_000_000
    with np.load(sources.FASHION_SUBSET) as archive:
        labels, index = archive["labels"], archive["test_index"]
        assert archive["images"].shape == (3000, 28, 28) and archive["images"].dtype == np.uint8
    assert np.bincount(labels).tolist() == [300] * 10
    assert len(np.unique(index)) == 3000 and np.all(np.diff(index) > 0) and index.max() < 10_000
    assert (ROOT / "assets" / "fashion_subset.LICENSE").read_text().count("Zalando SE") >= 1


def test_embedded_splits_are_balanced_disjoint_and_deterministic():
    splits = {s: load_dataset("fashion", s) for s in ("train", "val", "test")}
    assert {s: torch.bincount(d.labels).tolist() for s, d in splits.items()} == {
        "train": [180] * 10, "val": [60] * 10, "test": [60] * 10}
    assert splits["val"].class_names[0] == "T-shirt/top" and splits["val"].input_shape == (1, 28, 28)
    again = load_dataset("fashion", "val")
    assert torch.equal(again.images, splits["val"].images) and torch.equal(again.labels, splits["val"].labels)
    keys = [set(map(bytes, pixels(d))) for d in splits.values()]
    assert not (keys[0] & keys[1]) and not (keys[0] & keys[2]) and not (keys[1] & keys[2])


def test_subset_indices_are_seeded_and_balanced():
    labels = np.repeat(np.arange(10), 1000)
    first, second = sources.fashion_subset_indices(labels), sources.fashion_subset_indices(labels)
    assert np.array_equal(first, second) and np.bincount(labels[first]).tolist() == [300] * 10
    assert not np.array_equal(first, sources.fashion_subset_indices(labels, seed=1))


@FULL
def test_embedded_subset_is_rebuilt_byte_for_byte_from_the_full_test_set():
    sys.path.insert(0, str(ROOT / "tools"))
    from make_fashion_subset import subset_bytes

    assert subset_bytes(str(DEBIAN_FASHION)) == sources.FASHION_SUBSET.read_bytes()
    full = load_dataset("fashionmnist", "test", root=DEBIAN_FASHION)
    with np.load(sources.FASHION_SUBSET) as archive:
        index = archive["test_index"]
        assert np.array_equal(pixels(full)[index], archive["images"])


# --- the shipped checkpoint ------------------------------------------------------------------------

def test_shipped_fashion_checkpoint_metadata():
    model = core.load_model(CHECKPOINT, device="cpu")
    assert model.meta.arch == "lenet5" and model.meta.arch_params["widths"] == [10, 20, 100, 25]
    assert model.meta.dataset == "fashionmnist" and model.meta.class_names[9] == "Ankle boot"
    assert 0.88 <= model.meta.accuracy["test"] <= 0.95
    # on the embedded subset (test images it never trained on) it is about as good
    assert core.evaluate(model, load_dataset("fashion", "test")).accuracy > 0.85


@FULL
def test_shipped_checkpoints_stored_test_accuracy_is_reproduced_on_the_full_10000():
    model = core.load_model(CHECKPOINT, device="cpu")
    test = load_dataset("fashionmnist", "test", root=DEBIAN_FASHION)
    assert len(test) == 10_000
    assert core.evaluate(model, test).accuracy == pytest.approx(model.meta.accuracy["test"], abs=1e-9)


def test_cli_falls_back_to_the_embedded_subset_with_a_note(nowhere):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "NRE_DATA_ROOT": "", "NRE_SYSTEM_DATA": str(nowhere / "system"),
           "PYTHONPATH": str(ROOT)}
    result = subprocess.run([sys.executable, "-m", "core", "evaluate", "--checkpoint", str(CHECKPOINT), "--split",
                             "test", "--json"], capture_output=True, text=True, cwd=nowhere / "work", env=env)
    assert result.returncode == 0, result.stderr[-500:]
    assert "note: fashionmnist was not found on this machine; using the embedded fashion" in result.stderr
    import json

    payload = json.loads(result.stdout)
    model = core.load_model(CHECKPOINT, device="cpu")
    assert payload["dataset"] == "fashion" and payload["images"] == 600
    assert payload["accuracy"] == pytest.approx(core.evaluate(model, load_dataset("fashion", "test")).accuracy, abs=1e-9)


@FULL
def test_the_toggle_widget_and_the_cli_on_the_full_test_set():
    import explorer_widgets as ew

    model = core.load_model(CHECKPOINT, device="cpu")
    test = load_dataset("fashionmnist", "test", root=DEBIAN_FASHION)
    panel = ew.toggle_panel(model, test, "conv1")
    panel.set_off([1, 4])
    assert panel.accuracy == pytest.approx(core.Engine(model, test).evaluate({"conv1": [1, 4]}).accuracy, abs=1e-12)
    result = subprocess.run([sys.executable, "-m", "core", "evaluate", "--checkpoint", str(CHECKPOINT), "--split", "test",
                             "--off", "conv1:1,4", "--json"], capture_output=True, text=True, cwd=ROOT,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    import json

    payload = json.loads(result.stdout)
    assert payload["dataset"] == "fashionmnist" and payload["images"] == 10_000
    assert payload["accuracy"] == pytest.approx(panel.accuracy, abs=1e-9)
