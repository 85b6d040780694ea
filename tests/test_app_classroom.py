"""A class on one server (issue 21): shared work is done once, every page works on a torchvision model."""
from __future__ import annotations

import os
import re
import threading

import pytest
import torch

import streamlit as st
from streamlit.testing.v1 import AppTest

import core
from core.engine import cache
from tests.conftest import APP_TIMEOUT, ROOT, open_page


class Counter:
    """Counts calls of a function (wrapping it), and of Engine.evaluate without a mask."""

    def __init__(self, monkeypatch):
        self.activations = 0
        self.baselines = 0
        real_activations, real_evaluate = core.engine.plots.unit_activations, core.Engine.evaluate

        def activations(*args, **kwargs):
            self.activations += 1
            return real_activations(*args, **kwargs)

        def evaluate(engine, off=None):
            if not off:
                self.baselines += 1
            return real_evaluate(engine, off)

        monkeypatch.setattr(core.engine.plots, "unit_activations", activations)
        monkeypatch.setattr(core.Engine, "evaluate", evaluate)

    def total(self) -> tuple[int, int, int]:
        return self.activations, self.baselines, sum(cache.COMPUTED.values())


def test_a_second_session_reuses_what_the_first_computed(monkeypatch):
    """Thumbnails, the full network's accuracy and the quick ranking of (model, data, layer) are computed
    by the first session only; a second session opening the same view computes none of them."""
    st.cache_data.clear()
    st.cache_resource.clear()
    counter = Counter(monkeypatch)
    open_page("pages/toggle.py", layer="conv2")
    first = counter.total()
    assert first[0] >= 1 and first[1] >= 1  # the first session did compute them
    second = open_page("pages/toggle.py", layer="conv2")
    assert counter.total() == first
    second.toggle[2].set_value(False).run()  # a toggle computes only the masked evaluation
    assert counter.total() == first


def test_concurrent_requests_for_one_am_result_compute_it_once(model):
    """Eight sessions asking at the same moment for the same AM images: one computes, seven wait and load."""
    before = cache.COMPUTED["am"]
    results, start = [], threading.Barrier(8)

    def ask():
        start.wait()
        results.append(core.am_images(model, "conv1", steps=3, seed=123))

    threads = [threading.Thread(target=ask) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert cache.COMPUTED["am"] - before == 1
    assert all((r.images == results[0].images).all() for r in results)


@pytest.fixture
def all_cores():
    """The test runs alone: both cores of a CI machine (the policy's one thread is for a shared server)."""
    before = torch.get_num_threads()
    core.set_threads(os.cpu_count() or 1)
    yield
    core.set_threads(before)


def test_every_page_renders_on_a_random_resnet18(all_cores):
    """Every page on ``torchvision:resnet18:random`` (the digits converted to 3x224x224) without an error:
    live toggles show their switches (the hooked path), the others their default, CPU-sized, work."""
    paths = re.findall(r'st\.Page\("(pages/[^"]+)"', (ROOT / "explorer.py").read_text())
    for path in paths:
        at = AppTest.from_file(str(ROOT / "explorer.py"), default_timeout=APP_TIMEOUT * 4)
        at.query_params["model"] = "torchvision:resnet18:random"
        at.run()
        at.switch_page(path).run()
        assert not at.exception, (path, at.exception)
        assert not at.error, (path, [e.value for e in at.error])
        if path == "pages/toggle.py":
            assert len(at.toggle) == 60  # 64 units of net.conv1, paged
            before = at.metric[0].value
            at.toggle[0].set_value(False).run()
            assert not at.error and at.metric[1].value == "1 / 64"
            assert before is not None
