"""``load_dataset``: one split of a dataset by name, from the embedded digits or files on disk.

Sources: the embedded ``digits`` (scikit-learn's bundled handwritten digits) and ``fashion`` (a
class-balanced subset of Fashion-MNIST's test images in assets/), MNIST / FashionMNIST / CIFAR-10
(torchvision's on-disk formats, or Debian's dataset packages, found by ``locate``; optional download)
and an ImageFolder of the user's own images. Every split is fixed and seeded, so caches keyed by split are valid.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

from .images import convert_images
from .locate import FILE_DATASETS, available_datasets
from .sources import cifar10, digits, fashion, image_folder, mnist_like
from .split import SPLITS, DataError, DataSplit

DATASETS = ("digits", "fashion", "mnist", "fashionmnist", "cifar10", "imagefolder")
EMBEDDED = ("digits", "fashion")  # shipped with the project: need nothing installed
STAND_INS = {"fashionmnist": "fashion"}  # the embedded dataset that stands in for a file dataset not found here


def load_dataset(name: str, split: str = "val", root: str | os.PathLike | None = None,
                 download: bool = False, input_shape: Sequence[int] | None = None,
                 limit: int | None = None) -> DataSplit:
    """Load one split of a dataset.

    ``split``: train / val / test (val is held out of the training data with a fixed seed).
    ``root``: where MNIST / FashionMNIST / CIFAR-10 are looked for first; then ``$NRE_DATA_ROOT``,
    ``./data`` and ``/usr/share/datasets/<name>`` (``core.data.locate``).
    ``input_shape``: convert images to this (C, H, W) — used for ImageFolder and checks.
    ``limit``: keep a seeded subset of at most this many images.
    """
    name = name.lower().replace("-", "").replace("_", "")
    if split not in SPLITS:
        raise DataError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
    if name == "digits":
        data = digits(split)
    elif name == "fashion":
        data = fashion(split)
    elif name in ("mnist", "fashionmnist"):
        data = mnist_like(name, split, root, download)
    elif name == "cifar10":
        data = cifar10(split, root, download)
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



def default_dataset(model_dataset: str | None, root: str | os.PathLike | None = None) -> str:
    """The dataset to use for a model when none is named: the one it was trained on, or, when that is a
    file dataset not found on this machine, its embedded stand-in (FashionMNIST -> fashion)."""
    name = model_dataset or "digits"
    if name in FILE_DATASETS and name in STAND_INS and name not in available_datasets(root):
        return STAND_INS[name]
    return name
