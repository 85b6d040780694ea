"""The datasets' own formats: scikit-learn's embedded digits, idx files (MNIST, Fashion-MNIST),
CIFAR-10's pickled batches and a folder of images per class."""
from __future__ import annotations

import functools
import gzip
import pickle
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from .images import image_to_tensor
from .locate import data_roots, find_files, require_files
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

FASHION_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                   "Sneaker", "Bag", "Ankle boot"]


def read_idx(path: Path) -> torch.Tensor:
    """Read an unsigned-byte idx file (MNIST's format), plain or gzip-compressed.

    Kept in memory per file (and its size and time), so the train, val and test splits of one
    dataset, and every browser session, read the 47 MB of Fashion-MNIST's training images once."""
    path = Path(path)
    try:
        stat = path.stat()
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc}") from None
    return _read_idx_cached(str(path.resolve()), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=8)
def _read_idx_cached(path: str, size: int, mtime_ns: int) -> torch.Tensor:
    opener = gzip.open if path.endswith(".gz") else open
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


def mnist_like(name: str, split: str, root: str | Path | None, download: bool) -> DataSplit:
    source = "test" if split == "test" else "train"
    if download and find_files(name, source, root) is None:
        from torchvision import datasets

        cls = datasets.MNIST if name == "mnist" else datasets.FashionMNIST
        target = data_roots(root)[0]
        try:
            cls(str(target), train=source == "train", download=True)
        except Exception as exc:  # network errors come in many types
            raise DataError(f"could not download {cls.__name__} into {target / cls.__name__ / 'raw'}: {exc}") from None
    found = require_files(name, source, root)
    images, labels = read_idx(found.files[0]), read_idx(found.files[1]).long()
    if len(images) != len(labels):
        raise DataError(f"{found.files[0].name} holds {len(images)} images but {found.files[1].name} {len(labels)} labels")
    if source == "train":
        idx = torch.from_numpy(_split_indices(len(images), "val" if split == "val" else "train", (1 / 12, 0.0)))
        images, labels = images[idx], labels[idx]
    classes = [str(c) for c in range(10)] if name == "mnist" else list(FASHION_CLASSES)
    return DataSplit(name, split, (images.float() / 255.0).unsqueeze(1).contiguous(), labels, classes)


# --- fashion (embedded): a class-balanced subset of Fashion-MNIST's test images, shipped in assets/ ---

FASHION_SUBSET = Path(__file__).resolve().parents[2] / "assets" / "fashion_subset.npz"
FASHION_PER_CLASS = 300  # 3,000 images: 10 classes x 300, drawn with FASHION_SEED from the 10,000 test images
FASHION_SEED = 0
FASHION_SHA256 = "f54d6d07a35a55278279ffbb773ed59d683db6cd6d39fef4989d59db1571edf6"


def fashion_subset_indices(labels: np.ndarray, per_class: int = FASHION_PER_CLASS,
                           seed: int = FASHION_SEED) -> np.ndarray:
    """The test images the shipped subset holds: ``per_class`` of each class, seeded, in file order."""
    rng = np.random.default_rng(seed)
    chosen = [rng.choice(np.flatnonzero(labels == c), per_class, replace=False) for c in range(10)]
    return np.sort(np.concatenate(chosen))


def fashion(split: str) -> DataSplit:
    """The embedded Fashion-MNIST subset; a fixed seeded 60/20/20 split of each class (180/60/60 images)."""
    if not FASHION_SUBSET.is_file():
        raise DataError(f"the embedded Fashion-MNIST subset {FASHION_SUBSET} is missing; "
                        f"restore it from the repository (or run tools/make_fashion_subset.py)")
    with np.load(FASHION_SUBSET) as archive:
        images, labels = archive["images"], archive["labels"]
    idx = np.sort(np.concatenate([np.flatnonzero(labels == c)[_split_indices(int((labels == c).sum()), split, (0.2, 0.2))]
                                  for c in range(len(FASHION_CLASSES))]))
    return DataSplit("fashion", split, torch.from_numpy(images[idx]).float().div(255.0).unsqueeze(1).contiguous(),
                     torch.from_numpy(labels[idx].astype(np.int64)), list(FASHION_CLASSES))


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


def cifar10(split: str, root: str | Path | None, download: bool) -> DataSplit:
    part = "test" if split == "test" else "train"
    if download and find_files("cifar10", part, root) is None:
        from torchvision import datasets

        target = data_roots(root)[0]
        try:
            datasets.CIFAR10(str(target), train=part == "train", download=True)
        except Exception as exc:
            raise DataError(f"could not download CIFAR-10 into {target / 'cifar-10-batches-py'}: {exc}") from None
    found = require_files("cifar10", part, root)
    parts = [_read_cifar_batch(path) for path in found.files]
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

