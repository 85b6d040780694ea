"""Datasets as in-memory tensors: images float32 in [0, 1], shape (N, C, H, W).

Sources: the embedded ``digits`` (scikit-learn's bundled handwritten digits), torchvision's
MNIST / FashionMNIST / CIFAR-10 (on-disk formats, optional download) and an ImageFolder of
the user's own images. Every split is fixed and seeded, so caches keyed by split are valid.
"""
from __future__ import annotations

import gzip
import os
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

DATASETS = ("digits", "mnist", "fashionmnist", "cifar10", "imagefolder")
SPLITS = ("train", "val", "test")
SPLIT_SEED = 0


class DataError(Exception):
    """A dataset cannot be loaded; the message says what is missing and where."""


@dataclass
class DataSplit:
    name: str
    split: str
    images: torch.Tensor  # (N, C, H, W) float32 in [0, 1]
    labels: torch.Tensor  # (N,) int64
    class_names: list[str]

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return tuple(self.images.shape[1:])  # type: ignore[return-value]

    @property
    def key(self) -> str:
        """Identifies the split's contents for caches."""
        return f"{self.name}:{self.split}:{len(self)}"

    def subset(self, n: int, seed: int = SPLIT_SEED) -> "DataSplit":
        """A seeded random subset of ``n`` items (the whole split if it is smaller)."""
        if n >= len(self):
            return self
        idx = torch.randperm(len(self), generator=torch.Generator().manual_seed(seed))[:n].sort().values
        return DataSplit(self.name, f"{self.split}[{n}]", self.images[idx], self.labels[idx], self.class_names)


def load_dataset(name: str, split: str = "val", root: str | os.PathLike | None = None,
                 download: bool = False, input_shape: Sequence[int] | None = None,
                 limit: int | None = None) -> DataSplit:
    """Load one split of a dataset.

    ``split``: train / val / test (val is held out of the training data with a fixed seed).
    ``input_shape``: convert images to this (C, H, W) — used for ImageFolder and checks.
    ``limit``: keep a seeded subset of at most this many images.
    """
    name = name.lower().replace("-", "").replace("_", "")
    if split not in SPLITS:
        raise DataError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
    if name == "digits":
        data = _digits(split)
    elif name in ("mnist", "fashionmnist"):
        data = _mnist_like(name, split, _root(root), download)
    elif name == "cifar10":
        data = _cifar10(split, _root(root), download)
    elif name == "imagefolder":
        if root is None:
            raise DataError("imagefolder needs a folder: one sub-folder per class, holding images")
        data = _image_folder(Path(root), split, input_shape)
    else:
        raise DataError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")
    if input_shape is not None and tuple(input_shape) != data.input_shape:
        data = DataSplit(data.name, data.split, convert_images(data.images, input_shape),
                         data.labels, data.class_names)
    return data.subset(limit) if limit else data


def _root(root: str | os.PathLike | None) -> Path:
    return Path(root or os.environ.get("NRE_DATA_ROOT", "data")).expanduser()


def _split_indices(n: int, split: str, fractions: tuple[float, float]) -> np.ndarray:
    """Seeded train/val/test partition of n items by (val, test) fractions."""
    order = np.random.default_rng(SPLIT_SEED).permutation(n)
    n_val, n_test = int(round(n * fractions[0])), int(round(n * fractions[1]))
    parts = {"val": order[:n_val], "test": order[n_val:n_val + n_test], "train": order[n_val + n_test:]}
    return np.sort(parts[split])


# --- digits (embedded) -------------------------------------------------------------------

def _digits(split: str) -> DataSplit:
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


def _mnist_like(name: str, split: str, root: Path, download: bool) -> DataSplit:
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


def _cifar10(split: str, root: Path, download: bool) -> DataSplit:
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

def _image_folder(root: Path, split: str, input_shape: Sequence[int] | None) -> DataSplit:
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


# --- conversion to the model's input ---------------------------------------------------------

def image_to_tensor(img: Image.Image, input_shape: Sequence[int]) -> tuple[torch.Tensor, str]:
    """Convert any PIL image to a (C, H, W) tensor in [0, 1]; also say what was done."""
    channels, height, width = input_shape
    steps = [f"{img.width}x{img.height} {img.mode}"]
    if getattr(img, "n_frames", 1) > 1:
        img.seek(0)
        steps.append("first frame")
    if img.mode.startswith("I") or img.mode == "F":  # 16/32-bit: PIL's convert() would clip, not scale
        array = np.asarray(img, dtype=np.float64)
        top = 65535.0 if img.mode != "F" else (1.0 if array.max() <= 1.0 else 255.0)
        img = Image.fromarray(np.clip(np.round(array / top * 255.0), 0, 255).astype(np.uint8))
        steps.append("scaled to 8-bit")
    if img.mode in ("RGBA", "LA", "P") or "transparency" in img.info:
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (0, 0, 0, 255) if channels == 1 else (255, 255, 255, 255))
        img = Image.alpha_composite(background, rgba)
        steps.append("alpha flattened")
    target_mode = "L" if channels == 1 else "RGB"
    if img.mode != target_mode:
        img = img.convert(target_mode)
        steps.append("to grayscale" if channels == 1 else "to RGB")
    if img.size != (width, height):
        img = img.resize((width, height), Image.Resampling.BILINEAR)
        steps.append(f"resized to {width}x{height}")
    array = np.asarray(img, dtype=np.float32) / 255.0
    tensor = torch.from_numpy(array).unsqueeze(0) if channels == 1 else torch.from_numpy(array).permute(2, 0, 1)
    return tensor.contiguous(), " -> ".join(steps)


def read_image(content: bytes, name: str, input_shape: Sequence[int]) -> tuple[torch.Tensor, str]:
    """An uploaded file's bytes as the model's input (see ``image_to_tensor``); a file that is not an image
    PIL can decode (or is absurdly large) is a DataError that names the file and says what to do."""
    import io

    from PIL import UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(content)) as img:
            img.load()
            return image_to_tensor(img, input_shape)
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, SyntaxError, ValueError):
        raise DataError(f"{name} is not an image this app can read: upload a PNG or JPEG picture") from None


def convert_images(images: torch.Tensor, input_shape: Sequence[int]) -> torch.Tensor:
    """Batch conversion of channels and size (grayscale <-> RGB, bilinear resize)."""
    channels, height, width = input_shape
    if images.shape[1] != channels:
        images = images.mean(1, keepdim=True) if channels == 1 else images.expand(-1, channels, -1, -1)
    if images.shape[2:] != (height, width):
        images = F.interpolate(images, size=(height, width), mode="bilinear", align_corners=False)
    return images.clamp(0, 1).contiguous()
