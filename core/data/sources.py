"""The datasets' own formats: scikit-learn's embedded digits, idx files (MNIST, Fashion-MNIST),
CIFAR-10's pickled batches and a folder of images per class."""
from __future__ import annotations

import gzip
import pickle
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from .images import image_to_tensor
from .split import DataError, DataSplit, _split_indices

# --- digits (embedded) -------------------------------------------------------------------

def digits(split: str) -> DataSplit:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = torch.tensor(bunch.images, dtype=torch.float32).unsqueeze(1) / 16.0
    # 8x8 -> 20x20, centred in 28x28 like MNIST's framing, so LeNet-5 sees MNIST-like input.
    images = F.pad(F.interpolate(images, size=(20, 20), mode="bilinear", align_corners=False), (4, 4, 4, 4))
    idx = _split_indices(len(images), split, (0.2, 0.2))
    return DataSplit("digits", split, images[idx].clamp(0, 1).contiguous(),
                     torch.tensor(bunch.target[idx], dtype=torch.int64), [str(c) for c in range(10)])


# --- MNIST / FashionMNIST (idx files) ------------------------------------------------------

_IDX_FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
              "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}
_FASHION_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                    "Sneaker", "Bag", "Ankle boot"]


def read_idx(path: Path) -> torch.Tensor:
    """Read an unsigned-byte idx file (MNIST's format), plain or gzip-compressed."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as fh:
            return _parse_idx_bytes(fh.read())
    except (OSError, EOFError) as exc:
        raise DataError(f"cannot read {path}: {exc}") from None


def _parse_idx_bytes(data: bytes) -> torch.Tensor:
    magic = int.from_bytes(data[0:4], "big")
    ndim, type_code = magic % 256, magic // 256
    if type_code != 8:
        raise DataError("idx file does not hold unsigned bytes (type 0x08)")
    shape = [int.from_bytes(data[4 * (i + 1): 4 * (i + 2)], "big") for i in range(ndim)]
    array = np.frombuffer(data, dtype=np.uint8, offset=4 * (ndim + 1))
    if array.size != int(np.prod(shape)):
        raise DataError("idx file is truncated")
    return torch.from_numpy(array.reshape(shape).copy())


def _find(folder_candidates: list[Path], filename: str) -> Path | None:
    for folder in folder_candidates:
        for candidate in (folder / filename, folder / (filename + ".gz")):
            if candidate.is_file():
                return candidate
    return None


def mnist_like(name: str, split: str, root: Path, download: bool) -> DataSplit:
    from torchvision import datasets

    cls = datasets.MNIST if name == "mnist" else datasets.FashionMNIST
    raw = root / cls.__name__ / "raw"
    source = "test" if split == "test" else "train"
    if download:
        try:
            cls(str(root), train=source == "train", download=True)
        except Exception as exc:  # network errors come in many types
            raise DataError(f"could not download {cls.__name__} into {raw}: {exc}") from None
    files = [_find([raw, root], f) for f in _IDX_FILES[source]]
    if None in files:
        expected = ", ".join(_IDX_FILES[source])
        raise DataError(f"{cls.__name__} {source} files not found in {raw} (or {root}); expected {expected} "
                        f"(optionally .gz). Download them, or pass download=True / --download when online.")
    images = read_idx(files[0]).float().unsqueeze(1) / 255.0
    labels = read_idx(files[1]).long()
    if len(images) != len(labels):
        raise DataError(f"{files[0].name} holds {len(images)} images but {files[1].name} {len(labels)} labels")
    if source == "train":
        idx = _split_indices(len(images), "val" if split == "val" else "train", (1 / 12, 0.0))
        images, labels = images[idx], labels[idx]
    classes = [str(c) for c in range(10)] if name == "mnist" else _FASHION_CLASSES
    return DataSplit(name, split, images.contiguous(), labels, classes)


# --- CIFAR-10 (python pickle batches, read without executing code) --------------------------

_CIFAR_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


class _SafeUnpickler(pickle.Unpickler):
    """CIFAR batches are pickles: allow only the NumPy array reconstruction they need."""

    _ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
                ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode")}

    def find_class(self, module: str, name: str):
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refused to load {module}.{name} from a data file")


def _read_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        with open(path, "rb") as fh:
            entry = _SafeUnpickler(fh, encoding="latin1").load()
        # The originals are Python 2 pickles (str keys under latin1); re-pickled copies may have bytes keys.
        entry = {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in entry.items()}
        data = np.asarray(entry["data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
        labels = np.asarray(entry.get("labels", entry.get("fine_labels")), dtype=np.int64)
    except (pickle.UnpicklingError, AttributeError, KeyError, ValueError, TypeError, EOFError) as exc:
        raise DataError(f"{path} is not a CIFAR-10 batch file: {exc}") from None
    if len(data) != len(labels):
        raise DataError(f"{path} holds {len(data)} images but {len(labels)} labels")
    return data, labels


def cifar10(split: str, root: Path, download: bool) -> DataSplit:
    from torchvision import datasets

    folder = root / "cifar-10-batches-py"
    if download:
        try:
            datasets.CIFAR10(str(root), train=split != "test", download=True)
        except Exception as exc:
            raise DataError(f"could not download CIFAR-10 into {folder}: {exc}") from None
    names = ["test_batch"] if split == "test" else [f"data_batch_{i}" for i in range(1, 6)]
    missing = [n for n in names if not (folder / n).is_file()]
    if missing:
        raise DataError(f"CIFAR-10 files not found in {folder}: missing {', '.join(missing)} "
                        f"(the python version, cifar-10-python.tar.gz, extracted). "
                        f"Pass download=True / --download when online.")
    parts = [_read_cifar_batch(folder / n) for n in names]
    images = torch.from_numpy(np.concatenate([p[0] for p in parts])).float() / 255.0
    labels = torch.from_numpy(np.concatenate([p[1] for p in parts]))
    if split != "test":
        idx = _split_indices(len(images), split, (0.1, 0.0))
        images, labels = images[idx], labels[idx]
    return DataSplit("cifar10", split, images.contiguous(), labels, list(_CIFAR_CLASSES))


# --- ImageFolder ----------------------------------------------------------------------------

def image_folder(root: Path, split: str, input_shape: Sequence[int] | None) -> DataSplit:
    from torchvision.datasets import ImageFolder

    if not root.is_dir():
        raise DataError(f"image folder {root} does not exist; expected {root}/<class name>/<image files>")
    has_splits = (root / "train").is_dir() and (root / "test").is_dir()
    if not has_splits:  # one folder: a seeded 70/15/15 split
        folder, fractions = root, (0.15, 0.15)
    elif split == "test" or (root / "val").is_dir():  # the user's own split folders
        folder, fractions = root / split, None
    else:  # train/ and test/ only: val is a seeded part of train/, disjoint from the train split
        folder, fractions = root / "train", (0.15, 0.0)
    shape = tuple(input_shape or (3, 32, 32))
    try:
        dataset = ImageFolder(str(folder), loader=lambda p: Image.open(p))
    except (FileNotFoundError, RuntimeError) as exc:
        raise DataError(f"no images found in {folder}: expected {folder}/<class name>/<image files> ({exc})") from None
    indices = np.arange(len(dataset)) if fractions is None else _split_indices(len(dataset), split, fractions)
    images, labels = [], []
    for i in indices:
        path, label = dataset.samples[i]
        try:
            with Image.open(path) as img:
                images.append(image_to_tensor(img, shape)[0])
        except (OSError, ValueError) as exc:
            raise DataError(f"cannot read image {path}: {exc}") from None
        labels.append(label)
    if not images:
        raise DataError(f"the {split} split of {root} is empty")
    return DataSplit(f"imagefolder:{root.name}", split, torch.stack(images), torch.tensor(labels),
                     list(dataset.classes))

