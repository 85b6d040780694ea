"""``load_dataset``: one split of a dataset by name, from the embedded digits or files on disk.

Sources: the embedded ``digits`` (scikit-learn's bundled handwritten digits), torchvision's
MNIST / FashionMNIST / CIFAR-10 (on-disk formats, optional download) and an ImageFolder of
the user's own images. Every split is fixed and seeded, so caches keyed by split are valid.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

from .images import convert_images
from .sources import cifar10, digits, image_folder, mnist_like
from .split import SPLITS, DataError, DataSplit

DATASETS = ("digits", "mnist", "fashionmnist", "cifar10", "imagefolder")


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
        data = digits(split)
    elif name in ("mnist", "fashionmnist"):
        data = mnist_like(name, split, _root(root), download)
    elif name == "cifar10":
        data = cifar10(split, _root(root), download)
    elif name == "imagefolder":
        if root is None:
            raise DataError("imagefolder needs a folder: one sub-folder per class, holding images")
        data = image_folder(Path(root), split, input_shape)
    else:
        raise DataError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")
    if input_shape is not None and tuple(input_shape) != data.input_shape:
        data = DataSplit(data.name, data.split, convert_images(data.images, input_shape),
                         data.labels, data.class_names)
    return data.subset(limit) if limit else data


def _root(root: str | os.PathLike | None) -> Path:
    return Path(root or os.environ.get("NRE_DATA_ROOT", "data")).expanduser()

