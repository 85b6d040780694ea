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
APP_TIMEOUT = 180  # model loading and first computations take longer than AppTest's default 3 s


DIGITS_MODEL = "lenet5_digits.pt"


def turn_off_lowest(at, ranking: str, k: int) -> list[int]:
    """On Live toggles: pick the session ranking ``ranking``, turn off its ``k`` lowest units; the units now off."""
    at.switch_page("pages/toggle.py").run()
    box = next(s for s in at.selectbox if s.label == "Ranking")
    assert ranking in box.options, box.options
    box.set_value(ranking)
    at.number_input[0].set_value(k)
    at.run()
    next(b for b in at.button if b.label.startswith("Turn off")).click().run()
    assert not at.exception, at.exception
    return [i for i, t in enumerate(at.toggle) if not t.value]


def open_page(path: str | None = None, layer: str | None = None, model: str | None = DIGITS_MODEL):
    """An AppTest session of the whole app, on ``path`` (default: the overview) and ``layer``,
    checked to have rendered without exception or error message.

    ``model`` goes in the link (``?model=``): the digits model unless a test asks otherwise, because most app
    tests compare what a page shows with ``core.load_model()`` (the digits model) on the digits data, while the
    app itself opens on the Fashion-MNIST model. ``model=None`` opens the app as a fresh visitor does."""
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(ROOT / "explorer.py"), default_timeout=APP_TIMEOUT)
    if model:
        at.query_params["model"] = model
    at.run()
    if path:
        at.switch_page(path)
        at.run()
    if layer:
        at.sidebar.selectbox(key="layer").set_value(layer)
        at.run()
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    return at


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


@pytest.fixture(scope="module")
def local_ray():
    """A local Ray of 2 CPUs for the module's tests (issue 12: keep it small), always shut down at its end."""
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        yield ray
    finally:
        ray.shutdown()
