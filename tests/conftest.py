"""Shared fixtures. Every test run gets its own empty on-disk cache."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("NRE_CACHE_DIR", str(ROOT / ".pytest_cache" / "nre-cache"))
torch.set_num_threads(min(2, torch.get_num_threads()))

import core  # noqa: E402

MNIST_T10K = ROOT.parent / "shared" / "data" / "mnist-t10k"


@pytest.fixture(autouse=True, scope="session")
def fresh_cache(tmp_path_factory):
    """Rankings/AM caches go to a temporary folder, so tests never see stale results."""
    os.environ["NRE_CACHE_DIR"] = str(tmp_path_factory.mktemp("nre-cache"))


@pytest.fixture(scope="session")
def model():
    """The shipped LeNet-5 10-20-100-25 trained on digits (do not modify it in a test)."""
    return core.load_model()


@pytest.fixture(scope="session")
def digits_val():
    return core.load_dataset("digits", "val")


@pytest.fixture(scope="session")
def digits_test():
    return core.load_dataset("digits", "test")
