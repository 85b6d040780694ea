"""Write assets/fashion_subset.npz: the embedded ``fashion`` dataset.

A fixed, seeded, class-balanced subset of Fashion-MNIST's *test* images (300 of each of the 10
classes = 3,000 images, uint8, in the test file's order), read from wherever ``core.data.locate``
finds the files (Debian's /usr/share/datasets/fashion-mnist, ./data/FashionMNIST/raw, ...).
Deterministic: the same files give the same bytes (numpy's savez_compressed with fixed names),
whose sha256 is ``core.data.sources.FASHION_SHA256`` (tests/test_fashion.py checks both).

    python tools/make_fashion_subset.py [--data-root DIR]
"""
from __future__ import annotations

import argparse
import hashlib
import io
import sys
import zipfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.data.locate import require_files  # noqa: E402
from core.data.sources import FASHION_SUBSET, fashion_subset_indices, read_idx  # noqa: E402


def subset_bytes(root: str | None = None) -> bytes:
    """The archive's bytes: images (3000, 28, 28) uint8, labels (3000,) uint8, test_index (3000,) int32."""
    found = require_files("fashionmnist", "test", root)
    images, labels = read_idx(found.files[0]).numpy(), read_idx(found.files[1]).numpy()
    index = fashion_subset_indices(labels)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        for name, array in (("images", images[index]), ("labels", labels[index]),
                            ("test_index", index.astype(np.int32))):
            member = io.BytesIO()
            np.lib.format.write_array(member, np.ascontiguousarray(array), allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))  # fixed: same bytes each run
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, member.getvalue(), compresslevel=9)
    return buffer.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", default=None)
    args = parser.parse_args()
    content = subset_bytes(args.data_root)
    FASHION_SUBSET.write_bytes(content)
    print(f"{FASHION_SUBSET}: {len(content):,} bytes, sha256 {hashlib.sha256(content).hexdigest()}")


if __name__ == "__main__":
    main()
