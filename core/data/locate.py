"""Where a dataset's files live on this machine: the data root given, then ``$NRE_DATA_ROOT``, then
``./data``, then the system dataset folder of Debian's ``dataset-*`` packages (``/usr/share/datasets``).

Each root is searched in the layouts the files come in: torchvision's (``<root>/FashionMNIST/raw``,
``<root>/cifar-10-batches-py``), the files directly in the root, and Debian's flat folder
(``/usr/share/datasets/fashion-mnist/*.gz``, without torchvision's nesting).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from .split import DataError

SYSTEM_DATA = Path(os.environ.get("NRE_SYSTEM_DATA", "/usr/share/datasets"))  # Debian's dataset packages' folder
FILE_DATASETS = ("mnist", "fashionmnist", "cifar10")
# torchvision's folder under a root, and Debian's folder names under SYSTEM_DATA
_TORCHVISION_FOLDER = {"mnist": "MNIST/raw", "fashionmnist": "FashionMNIST/raw", "cifar10": "cifar-10-batches-py"}
_SYSTEM_FOLDERS = {"mnist": ("mnist",), "fashionmnist": ("fashion-mnist", "fashionmnist"),
                   "cifar10": ("cifar-10", "cifar10")}
IDX_FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
             "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}
CIFAR_FILES = {"train": tuple(f"data_batch_{i}" for i in range(1, 6)), "test": ("test_batch",)}
HOW_TO_GET = {"mnist": "pass download=True / --download when online (torchvision's download)",
              "fashionmnist": "install Debian's dataset-fashion-mnist (apt-get install dataset-fashion-mnist), "
                              "or pass download=True / --download when online (torchvision's download)",
              "cifar10": "pass download=True / --download when online (torchvision's download)"}
_DISPLAY = {"mnist": "MNIST", "fashionmnist": "FashionMNIST", "cifar10": "CIFAR-10"}


@dataclass(frozen=True)
class Found:
    """A dataset's files of one part (``train`` or ``test``): the folder and the files in it."""

    name: str
    part: str
    folder: Path
    files: tuple[Path, ...]


def data_roots(root: str | os.PathLike | None = None) -> list[Path]:
    """The roots searched, in order: ``root``, ``$NRE_DATA_ROOT``, ``./data`` (each once)."""
    roots: list[Path] = []
    for candidate in (root, os.environ.get("NRE_DATA_ROOT"), "data"):
        if candidate:
            path = Path(candidate).expanduser()
            if path not in roots:
                roots.append(path)
    return roots


def search_folders(name: str, root: str | os.PathLike | None = None) -> list[Path]:
    """Every folder that may hold ``name``'s files, in the order they are tried."""
    if name not in FILE_DATASETS:
        raise DataError(f"{name!r} has no files to find; datasets read from files: {', '.join(FILE_DATASETS)}")
    folders: list[Path] = []
    for base in data_roots(root):
        folders += [base / _TORCHVISION_FOLDER[name], base]
    for folder in _SYSTEM_FOLDERS[name]:
        folders += [SYSTEM_DATA / folder, SYSTEM_DATA / folder / _TORCHVISION_FOLDER[name]]
    return list(dict.fromkeys(folders))


def _wanted(name: str, part: str) -> tuple[str, ...]:
    return (CIFAR_FILES if name == "cifar10" else IDX_FILES)[part]


def _file_in(folder: Path, filename: str, gz: bool) -> Path | None:
    for candidate in (folder / filename, folder / (filename + ".gz")) if gz else (folder / filename,):
        if candidate.is_file():
            return candidate
    return None


def find_files(name: str, part: str, root: str | os.PathLike | None = None) -> Found | None:
    """The first folder holding all of ``name``'s ``part`` files (idx files plain or .gz), or None."""
    for folder in search_folders(name, root):
        files = [_file_in(folder, f, gz=name != "cifar10") for f in _wanted(name, part)]
        if all(files):
            return Found(name, part, folder, tuple(files))  # type: ignore[arg-type]
    return None


def require_files(name: str, part: str, root: str | os.PathLike | None = None) -> Found:
    """Like ``find_files``, but a missing dataset is one DataError line naming where it looked."""
    found = find_files(name, part, root)
    if found is None:
        optional = " (optionally .gz)" if name != "cifar10" else " (the python version, extracted)"
        raise DataError(f"{_DISPLAY[name]} {part} files not found in {', '.join(map(str, search_folders(name, root)))}; "
                        f"expected {', '.join(_wanted(name, part))}{optional}. To get them: {HOW_TO_GET[name]}.")
    return found


def available_datasets(root: str | os.PathLike | None = None) -> dict[str, Path]:
    """The file datasets whose training and test files are both on this machine, with the folder of
    their test files (where they were found)."""
    found = {}
    for name in FILE_DATASETS:
        train, test = find_files(name, "train", root), find_files(name, "test", root)
        if train and test:
            found[name] = test.folder
    return found
