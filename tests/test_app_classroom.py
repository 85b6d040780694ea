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


@pytest.fixture
def small_generic_defaults(monkeypatch):
    """The app's defaults for a torchvision model, made small for the test (what is computed is the same code):
    8 images per split instead of 32, AM at 32 px and its minimum of 16 steps."""
    import ui.compute
    import ui.state

    monkeypatch.setattr(ui.state, "GENERIC_EVAL_LIMIT", 8)
    monkeypatch.setattr(ui.compute, "GENERIC_AM_SIZES", (32,))
    monkeypatch.setattr(ui.compute, "GENERIC_AM_STEPS", 16)


RESNET = "torchvision:resnet18:random"


def test_every_page_renders_on_a_random_resnet18(all_cores, small_generic_defaults):
    """Every page on ``torchvision:resnet18:random`` (the digits converted to 3x224x224) without an error:
    live toggles show their switches (the hooked path), Similar filters computes its clusters, Rankings computes
    Taylor, the others their default work; the numbers shown are core's on the same model and images."""
    paths = re.findall(r'st\.Page\("(pages/[^"]+)"', (ROOT / "explorer.py").read_text())
    for path in paths:
        at = AppTest.from_file(str(ROOT / "explorer.py"), default_timeout=APP_TIMEOUT * 4)
        at.query_params["model"] = RESNET
        at.run()
        at.switch_page(path).run()
        assert not at.exception, (path, at.exception)
        assert not at.error, (path, [e.value for e in at.error])
        assert not [i.value for i in at.info if "staged" in i.value], path
        if path == "pages/toggle.py":
            assert len(at.toggle) == 60  # 64 units of net.conv1, paged
            before = at.metric[0].value
            at.toggle[0].set_value(False).run()
            assert not at.error and at.metric[1].value == "1 / 64"
            assert before is not None
        if path == "pages/am_gallery.py":
            check_am_gallery(at)
        if path == "pages/similarity.py":
            check_similarity_page(at)
        if path == "pages/rankings.py":
            check_taylor_on_the_rankings_page(at)


def resnet_and_val():
    from ui.state import cached_dataset, cached_model

    model = cached_model("resnet18", pretrained=False)
    return model, cached_dataset("digits", "val", None, tuple(model.meta.input_shape), 8)


def check_am_gallery(at) -> None:
    """The images shown are core's AM at the torchvision defaults (here 32 px, 16 steps): the page stored them."""
    model, _ = resnet_and_val()
    assert [s.value for s in at.selectbox if s.label.startswith("AM image size")] == [32]
    assert any("defaults to 16 steps" in c.value and "(32 px here)" in c.value for c in at.caption)
    before = cache.COMPUTED["am"]
    assert core.am_images(model, "net.conv1", steps=16, size=32).images.shape == (64, 3, 32, 32)
    assert cache.COMPUTED["am"] == before


def check_similarity_page(at) -> None:
    """The clusters shown are core's (AM at the page's 32 px and 16 steps, γ and Taylor on the same 8 images)."""
    model, data = resnet_and_val()
    assert [s.value for s in at.selectbox if s.label.startswith("AM image size")] == [32]
    similarity = core.similarity_matrix(model, data, "net.conv1", 16, 0, size=32)
    clusters = core.cluster_filters(model, data, "net.conv1", 16, 0, similarity=similarity, size=32)
    assert at.metric[0].value == str(clusters.k)
    assert at.metric[2].value == str(len(clusters.locked))
    assert at.metric[3].value == f"{len(core.pruning_selection(clusters, 0.3))} / 64"
    assert any("Not offered on a torchvision model" in c.value for c in at.caption)


def check_taylor_on_the_rankings_page(at) -> None:
    """Taylor (and L1, the torchvision defaults) computed by the button; the table holds core's scores."""
    assert at.multiselect[0].value == ["Taylor (paper B Eq. 7)", "L1 norm"]
    at.button[0].click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    model, data = resnet_and_val()
    expected = core.rank(model, data, "net.conv1", "taylor")
    assert expected.cached  # the page computed and stored this very ranking
    labels = [e.label for e in at.expander]
    assert any(label.startswith("Taylor") for label in labels), labels


def test_the_default_am_size_keeps_each_resnet_layer_near_a_minute():
    """224 px for conv1, smaller images deeper in (the estimate grows with the network up to the layer), the
    staged models' own input size; every default is estimated within the budget or at the smallest size."""
    from types import SimpleNamespace

    from ui.compute import AM_BUDGET_S, GENERIC_AM_SIZES, GENERIC_AM_STEPS, am_step_seconds, default_am_size

    model = core.load_model(RESNET)
    layers = core.prunable_layers(model)
    chosen = SimpleNamespace(model=model, meta=model.meta, layer="net.conv1")
    sizes = [default_am_size(chosen, info.name) for info in layers]
    assert sizes[0] == 224 and sizes[-1] == min(GENERIC_AM_SIZES) and sizes == sorted(sizes, reverse=True)
    for info, size in zip(layers, sizes):
        estimate = GENERIC_AM_STEPS * am_step_seconds(layers, info.name, 224, size)
        assert estimate <= AM_BUDGET_S or size == min(GENERIC_AM_SIZES)
        bigger = [s for s in GENERIC_AM_SIZES if s > size]
        assert not bigger or GENERIC_AM_STEPS * am_step_seconds(layers, info.name, 224, min(bigger)) > AM_BUDGET_S
    lenet = core.load_model()
    assert default_am_size(SimpleNamespace(model=lenet, meta=lenet.meta, layer="conv2")) is None
