"""What a dataset is here: a ``DataSplit`` of in-memory tensors (images float32 in [0, 1], shape
(N, C, H, W)), the seeded train/val/test partition every source uses, and the errors loaders raise."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import torch

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


def _split_indices(n: int, split: str, fractions: tuple[float, float]) -> np.ndarray:
    """Seeded train/val/test partition of n items by (val, test) fractions."""
    order = np.random.default_rng(SPLIT_SEED).permutation(n)
    n_val, n_test = int(round(n * fractions[0])), int(round(n * fractions[1]))
    parts = {"val": order[:n_val], "test": order[n_val:n_val + n_test], "train": order[n_val + n_test:]}
    return np.sort(parts[split])


def data_digest(data: DataSplit) -> str:
    """Content hash of a split's images and labels (the caches' and pools' identity of the data)."""
    digest = hashlib.sha256(data.labels.cpu().numpy().tobytes())
    digest.update(data.images.cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()
