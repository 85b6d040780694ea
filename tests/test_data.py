"""Datasets: the loaders read files written here in the real on-disk formats (MNIST idx,
CIFAR-10 Python 2 pickle batches, image folders), and fail with messages that say what is missing."""
from __future__ import annotations

import gzip
import hashlib
import pathlib
import pickle
import struct

import numpy as np
import pytest
import torch
from PIL import Image

import core
from core.data import DataError, image_to_tensor, load_dataset, read_idx
from core.data.split import _split_indices

from conftest import MNIST_T10K


# --- writers for the real formats -------------------------------------------------------------

def write_idx(path: pathlib.Path, array: np.ndarray, gz: bool = False) -> None:
    """MNIST's idx format: magic 0x0000 08 <ndim>, big-endian int32 sizes, then unsigned bytes."""
    raw = struct.pack(">I", 0x0800 + array.ndim) + b"".join(struct.pack(">I", d) for d in array.shape)
    raw += array.astype(np.uint8).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    if gz:
        with gzip.open(str(path) + ".gz", "wb") as fh:
            fh.write(raw)
    else:
        path.write_bytes(raw)


def numbered_images(n: int, shape: tuple[int, ...], seed: int) -> np.ndarray:
    """Random uint8 images whose first pixel is their index, so each one can be recognized."""
    images = np.random.default_rng(seed).integers(0, 256, size=(n, *shape), dtype=np.uint8)
    images.reshape(n, -1)[:, 0] = np.arange(n)
    return images


def write_mnist(root: pathlib.Path, folder: str, gz: bool, n_train: int = 24, n_test: int = 10) -> dict:
    raw = root / folder / "raw"
    arrays = {"train": (numbered_images(n_train, (28, 28), 0), np.arange(n_train) % 10),
              "test": (numbered_images(n_test, (28, 28), 1), (np.arange(n_test) * 3) % 10)}
    for split, prefix in (("train", "train"), ("test", "t10k")):
        write_idx(raw / f"{prefix}-images-idx3-ubyte", arrays[split][0], gz)
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", arrays[split][1], gz)
    return arrays


class _Py2:
    """Emit pickle protocol 2 exactly as Python 2's cPickle wrote the CIFAR-10 batches: Python 2
    str (SHORT_BINSTRING/BINSTRING) keys and array bytes, numpy's _reconstruct + dtype state."""

    @staticmethod
    def string(value: bytes) -> bytes:
        if len(value) < 256:
            return b"U" + bytes([len(value)]) + value
        return b"T" + struct.pack("<i", len(value)) + value

    @staticmethod
    def integer(value: int) -> bytes:
        if 0 <= value < 256:
            return b"K" + bytes([value])
        if 0 <= value < 65536:
            return b"M" + struct.pack("<H", value)
        return b"J" + struct.pack("<i", value)

    @classmethod
    def array(cls, array: np.ndarray) -> bytes:
        assert array.dtype == np.uint8 and array.ndim == 2
        dtype = (b"cnumpy\ndtype\n" + cls.string(b"u1") + cls.integer(0) + cls.integer(1) + b"\x87R"
                 + b"(" + cls.integer(3) + cls.string(b"|") + b"NNN" + cls.integer(-1) + cls.integer(-1)
                 + cls.integer(0) + b"tb")
        return (b"cnumpy.core.multiarray\n_reconstruct\n" + b"cnumpy\nndarray\n" + cls.integer(0) + b"\x85"
                + cls.string(b"b") + b"\x87R" + b"(" + cls.integer(1) + cls.integer(array.shape[0])
                + cls.integer(array.shape[1]) + b"\x86" + dtype + b"\x89" + cls.string(array.tobytes()) + b"tb")

    @classmethod
    def value(cls, value) -> bytes:
        if isinstance(value, np.ndarray):
            return cls.array(value)
        if isinstance(value, str):
            return cls.string(value.encode("latin1"))
        if isinstance(value, int):
            return cls.integer(value)
        if isinstance(value, list):
            return b"](" + b"".join(cls.value(v) for v in value) + b"e"
        raise TypeError(type(value))

    @classmethod
    def dumps(cls, entry: dict) -> bytes:
        items = b"".join(cls.string(k.encode("latin1")) + cls.value(v) for k, v in entry.items())
        return b"\x80\x02}(" + items + b"u."


def write_cifar(root: pathlib.Path, per_batch: int = 4, n_test: int = 5) -> dict:
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    batches = {}
    for i, name in enumerate([f"data_batch_{j}" for j in range(1, 6)] + ["test_batch"]):
        n = n_test if name == "test_batch" else per_batch
        data = numbered_images(n, (3072,), seed=10 + i)
        labels = [int(v) for v in (np.arange(n) + i) % 10]
        batches[name] = (data, labels)
        entry = {"batch_label": f"{name} of 5", "labels": labels, "data": data,
                 "filenames": [f"img_{i}_{j}.png" for j in range(n)]}
        (folder / name).write_bytes(_Py2.dumps(entry))
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    (folder / "batches.meta").write_bytes(_Py2.dumps({"num_cases_per_batch": per_batch, "label_names": names,
                                                      "num_vis": 3072}))
    return batches


# --- MNIST / FashionMNIST ------------------------------------------------------------------------

@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gz"])
def test_mnist_reads_idx_files(tmp_path, gz):
    arrays = write_mnist(tmp_path, "MNIST", gz)
    test = load_dataset("mnist", "test", root=tmp_path)
    assert test.images.shape == (10, 1, 28, 28) and test.images.dtype == torch.float32
    torch.testing.assert_close(test.images[:, 0], torch.from_numpy(arrays["test"][0]).float() / 255)
    assert test.labels.tolist() == arrays["test"][1].tolist() and test.class_names == [str(i) for i in range(10)]
    train, val = load_dataset("mnist", "train", root=tmp_path), load_dataset("mnist", "val", root=tmp_path)
    ids = lambda split: set((split.images[:, 0, 0, 0] * 255).round().long().tolist())  # noqa: E731
    assert len(train) == 22 and len(val) == 2  # val = 1/12 of the training files, seeded
    assert ids(train).isdisjoint(ids(val)) and ids(train) | ids(val) == set(range(24))
    for split in (train, val):
        index = (split.images[:, 0, 0, 0] * 255).round().long()
        assert split.labels.tolist() == (index % 10).tolist()  # labels stay with their images


def test_mnist_files_match_torchvisions_reader(tmp_path):
    from torchvision.datasets import MNIST

    write_mnist(tmp_path, "MNIST", gz=False)
    reference = MNIST(str(tmp_path), train=False)
    ours = load_dataset("mnist", "test", root=tmp_path)
    assert torch.equal((ours.images[:, 0] * 255).round().to(torch.uint8), reference.data)
    assert torch.equal(ours.labels, reference.targets)


def test_fashionmnist_has_its_class_names(tmp_path):
    write_mnist(tmp_path, "FashionMNIST", gz=True)
    data = load_dataset("fashionmnist", "test", root=tmp_path)
    assert len(data) == 10 and data.class_names[0] == "T-shirt/top" and data.class_names[9] == "Ankle boot"


def test_missing_mnist_names_folder_and_files(tmp_path):
    with pytest.raises(DataError) as info:
        load_dataset("mnist", "test", root=tmp_path)
    message = str(info.value)
    assert str(tmp_path / "MNIST" / "raw") in message
    assert "t10k-images-idx3-ubyte" in message and "t10k-labels-idx1-ubyte" in message


def test_truncated_idx_file_is_refused(tmp_path):
    write_mnist(tmp_path, "MNIST", gz=False)
    path = tmp_path / "MNIST" / "raw" / "t10k-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(DataError, match="truncated"):
        load_dataset("mnist", "test", root=tmp_path)


def test_mnist_resized_to_a_models_input(tmp_path):
    write_mnist(tmp_path, "MNIST", gz=False)
    data = load_dataset("mnist", "test", root=tmp_path, input_shape=(3, 32, 32))
    assert data.images.shape == (10, 3, 32, 32) and 0 <= data.images.min() and data.images.max() <= 1


@pytest.mark.skipif(not MNIST_T10K.is_dir(), reason="real MNIST t10k files not present")
def test_real_mnist_t10k():
    md5 = {"t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
           "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c"}
    for name, digest in md5.items():
        assert hashlib.md5((MNIST_T10K / name).read_bytes()).hexdigest() == digest
    data = load_dataset("mnist", "test", root=MNIST_T10K)
    assert data.images.shape == (10_000, 1, 28, 28)
    assert torch.bincount(data.labels).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    assert data.images.min() == 0 and data.images.max() == 1
    assert torch.equal(read_idx(MNIST_T10K / "t10k-labels-idx1-ubyte.gz"), data.labels.to(torch.uint8))


# --- CIFAR-10 ------------------------------------------------------------------------------------

def test_cifar10_reads_python2_pickle_batches(tmp_path):
    batches = write_cifar(tmp_path)
    test = load_dataset("cifar10", "test", root=tmp_path)
    data, labels = batches["test_batch"]
    assert test.images.shape == (5, 3, 32, 32) and test.class_names[0] == "airplane"
    torch.testing.assert_close(test.images, torch.from_numpy(data).float().view(5, 3, 32, 32) / 255)
    assert test.labels.tolist() == labels
    train, val = load_dataset("cifar10", "train", root=tmp_path), load_dataset("cifar10", "val", root=tmp_path)
    assert len(train) + len(val) == 20 and len(val) == 2
    every = torch.cat([train.images, val.images]).flatten(1)
    written = torch.from_numpy(np.concatenate([batches[f"data_batch_{i}"][0] for i in range(1, 6)])).float() / 255
    assert sorted(map(tuple, every.tolist())) == sorted(map(tuple, written.tolist()))  # disjoint and complete


def test_cifar10_files_match_torchvisions_reader(tmp_path, monkeypatch):
    from torchvision.datasets import CIFAR10

    write_cifar(tmp_path)
    # our files are not the originals: skip torchvision's md5 checks, keep its reader
    monkeypatch.setattr(CIFAR10, "_check_integrity", lambda self: True)
    monkeypatch.setattr("torchvision.datasets.cifar.check_integrity", lambda path, md5=None: True)
    reference = CIFAR10(str(tmp_path), train=False)
    ours = load_dataset("cifar10", "test", root=tmp_path)
    assert np.array_equal((ours.images * 255).round().byte().permute(0, 2, 3, 1).numpy(), reference.data)
    assert ours.labels.tolist() == reference.targets and ours.class_names == reference.classes


def test_cifar10_accepts_python3_pickles_with_bytes_keys(tmp_path):
    batches = write_cifar(tmp_path)
    data, labels = batches["test_batch"]
    (tmp_path / "cifar-10-batches-py" / "test_batch").write_bytes(pickle.dumps({b"data": data, b"labels": labels}))
    test = load_dataset("cifar10", "test", root=tmp_path)
    assert test.labels.tolist() == labels and len(test) == 5


class Touch:
    def __init__(self, sentinel: pathlib.Path):
        self.sentinel = sentinel

    def __reduce__(self):
        return pathlib.Path.touch, (self.sentinel,)


def test_hostile_cifar_pickle_is_refused(tmp_path):
    write_cifar(tmp_path)
    sentinel = tmp_path / "code-ran"
    (tmp_path / "cifar-10-batches-py" / "test_batch").write_bytes(
        pickle.dumps({"data": Touch(sentinel), "labels": [0]}, protocol=2))
    with pytest.raises(DataError, match="refused to load"):
        load_dataset("cifar10", "test", root=tmp_path)
    assert not sentinel.exists()


def test_missing_cifar_names_folder_and_files(tmp_path):
    with pytest.raises(DataError) as info:
        load_dataset("cifar10", "train", root=tmp_path)
    message = str(info.value)
    assert str(tmp_path / "cifar-10-batches-py") in message
    assert "data_batch_1" in message and "data_batch_5" in message


# --- ImageFolder and uploads -------------------------------------------------------------------------

def odd_images() -> dict[str, Image.Image]:
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (23, 37, 3), dtype=np.uint8)
    return {"rgba.png": Image.fromarray(np.dstack([rgb, np.full((23, 37), 128, np.uint8)])),
            "gray.png": Image.fromarray(rgb[:, :, 0]),
            "palette.png": Image.fromarray(rgb).convert("P"),
            "sixteen.png": Image.fromarray(np.full((13, 9), 32768, dtype=np.uint16)),
            "photo.jpg": Image.fromarray(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)),
            "cmyk.jpg": Image.fromarray(rgb).convert("CMYK")}


@pytest.mark.parametrize("shape", [(3, 32, 32), (1, 28, 28)])
def test_image_folder_of_odd_images(tmp_path, shape):
    for i, (name, img) in enumerate(odd_images().items()):
        folder = tmp_path / "photos" / ("train" if i % 2 else "test") / ("cats" if i < 3 else "dogs")
        folder.mkdir(parents=True, exist_ok=True)
        img.save(folder / name)
    assert Image.open(tmp_path / "photos/train/dogs/sixteen.png").mode.startswith("I")  # really 16-bit on disk
    splits = [load_dataset("imagefolder", s, root=tmp_path / "photos", input_shape=shape) for s in ("train", "test")]
    images = torch.cat([s.images for s in splits])
    assert images.shape == (6, *shape) and images.min() >= 0 and images.max() <= 1
    assert splits[0].class_names == ["cats", "dogs"]
    sixteen = load_dataset("imagefolder", "train", root=tmp_path / "photos", input_shape=shape)
    # 16-bit mid-gray stays mid-gray (a plain 8-bit convert would clip it to white)
    assert any(torch.allclose(img, torch.full(shape, 128 / 255), atol=1 / 255) for img in sixteen.images)


def test_image_folder_split_is_seeded_and_disjoint(tmp_path):
    for i in range(20):
        folder = tmp_path / ("even" if i % 2 == 0 else "odd")
        folder.mkdir(exist_ok=True)
        Image.fromarray(np.full((10, 10), i * 10, np.uint8)).save(folder / f"{i}.png")
    values = {}
    for split in ("train", "val", "test"):
        data = load_dataset("imagefolder", split, root=tmp_path, input_shape=(1, 28, 28))
        values[split] = set((data.images[:, 0, 0, 0] * 25.5).round().long().tolist())
        assert all(data.class_names[label] == ("even" if v % 2 == 0 else "odd")
                   for label, v in zip(data.labels.tolist(), (data.images[:, 0, 0, 0] * 25.5).round().long().tolist()))
    assert [len(values[s]) for s in ("train", "val", "test")] == [14, 3, 3]
    assert set().union(*values.values()) == set(range(20))


def test_image_folder_with_train_and_test_carves_val_from_train(tmp_path):
    for split, count in (("train", 20), ("test", 4)):
        for i in range(count):
            folder = tmp_path / split / "only"
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.full((8, 8), i * 10 + (5 if split == "test" else 0), np.uint8)).save(folder / f"{i}.png")
    got = {s: set((load_dataset("imagefolder", s, root=tmp_path, input_shape=(1, 8, 8)).images[:, 0, 0, 0] * 255)
                  .round().long().tolist()) for s in ("train", "val", "test")}
    assert len(got["test"]) == 4 and all(v % 10 == 5 for v in got["test"])
    assert got["train"].isdisjoint(got["val"]) and len(got["train"] | got["val"]) == 20 and len(got["val"]) == 3


def test_image_folder_missing_or_empty(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_dataset("imagefolder", "test", root=tmp_path / "nothing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no images found in"):
        load_dataset("imagefolder", "test", root=tmp_path / "empty")


def test_image_to_tensor_says_what_it_did():
    tensor, description = image_to_tensor(odd_images()["rgba.png"], (1, 28, 28))
    assert tensor.shape == (1, 28, 28)
    assert description == "37x23 RGBA -> transparency flattened onto white -> to grayscale -> resized to 28x28"


# --- digits and general --------------------------------------------------------------------------------

def test_digits_splits_are_fixed_and_disjoint():
    sizes = {s: len(load_dataset("digits", s)) for s in ("train", "val", "test")}
    assert sizes == {"train": 1079, "val": 359, "test": 359}
    parts = [set(_split_indices(1797, s, (0.2, 0.2)).tolist()) for s in ("train", "val", "test")]
    assert sum(map(len, parts)) == 1797 and set().union(*parts) == set(range(1797))
    a, b = load_dataset("digits", "val"), load_dataset("digits", "val")
    assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels)
    assert a.images.shape[1:] == (1, 28, 28) and a.images.min() == 0 and a.images.max() <= 1
    assert a.key == "digits:val:359"


def test_subset_and_limit():
    full = load_dataset("digits", "test")
    small = load_dataset("digits", "test", limit=50)
    assert len(small) == 50 and small.subset(50) is small
    rows = {tuple(r) for r in full.images.flatten(1).tolist()}
    assert all(tuple(r) in rows for r in small.images.flatten(1).tolist())
    assert torch.equal(small.images, full.subset(50).images)


@pytest.mark.parametrize("name, split, message", [("imagenet", "test", "unknown dataset 'imagenet'"),
                                                  ("digits", "holdout", "unknown split 'holdout'")])
def test_unknown_dataset_or_split(name, split, message):
    with pytest.raises(DataError, match=message):
        core.load_dataset(name, split)
