"""AppTest (issue 20): the shipped Fashion-MNIST model on Overview, Live toggles and the AM gallery,
and the sidebar's list of the datasets found on this machine."""
from __future__ import annotations

from pathlib import Path

import pytest

import core
from core.data import locate
from tests.conftest import APP_TIMEOUT, ROOT, open_page

CHECKPOINT = Path(__file__).resolve().parents[1] / "assets" / "lenet5_fashionmnist.pt"
FULL = pytest.mark.skipif(not Path("/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz").is_file(),
                          reason="the full Fashion-MNIST is absent (apt-get install dataset-fashion-mnist)")


@pytest.fixture(scope="module")
def fashion_model():
    return core.load_model(CHECKPOINT, device="cpu")


@pytest.fixture
def no_system_data(tmp_path, monkeypatch):
    """This machine without Debian's dataset folder (and no ./data, no $NRE_DATA_ROOT)."""
    from ui.state import found_datasets

    monkeypatch.setattr(locate, "SYSTEM_DATA", tmp_path / "nothing")
    monkeypatch.delenv("NRE_DATA_ROOT", raising=False)
    found_datasets.clear()
    yield
    found_datasets.clear()


def on_fashion_model(path: str | None = None, layer: str | None = None):
    at = open_page(path)
    at.sidebar.selectbox(key="model_choice").set_value("lenet5_fashionmnist.pt").run()
    if layer:
        at.sidebar.selectbox(key="layer").set_value(layer).run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    return at


def accuracy_shown(at) -> float:
    metric = next(m for m in at.metric if m.label.startswith("Accuracy"))
    return float(metric.value.rstrip("%")) / 100


def test_without_the_full_set_the_model_starts_on_the_embedded_subset(no_system_data, fashion_model):
    at = on_fashion_model()
    dataset = at.sidebar.selectbox(key="dataset")
    assert dataset.value == "fashion" and list(dataset.options) == ["digits", "fashion", "imagefolder"]
    assert any("no MNIST, FashionMNIST or CIFAR-10 files" in c.value for c in at.sidebar.caption)
    accuracy = next(m for m in at.metric if m.label.startswith("Test accuracy"))
    assert accuracy.value == f"{core.evaluate(fashion_model, core.load_dataset('fashion', 'test')).accuracy:.2%}"
    assert any("better classroom demo" in m.value for m in at.markdown)
    assert any(c.value == "Evaluated on 600 fashion test images." for c in at.caption)


@FULL
def test_with_the_full_set_it_is_listed_with_its_folder_and_evaluated_on_a_seeded_subset(fashion_model):
    from ui.state import EVAL_LIMIT, found_datasets

    found_datasets.clear()
    at = on_fashion_model()
    dataset = at.sidebar.selectbox(key="dataset")
    assert dataset.value == "fashionmnist" and "fashionmnist" in dataset.options
    assert any("fashionmnist in `/usr/share/datasets/fashion-mnist`" in c.value for c in at.sidebar.caption)
    test = core.load_dataset("fashionmnist", "test").subset(EVAL_LIMIT)
    accuracy = next(m for m in at.metric if m.label.startswith("Test accuracy"))
    assert accuracy.value == f"{core.evaluate(fashion_model, test).accuracy:.2%}"
    assert any(c.value.startswith("Evaluated on 2,000 fashionmnist test images (a fixed seeded subset")
               for c in at.caption)


def test_live_toggles_on_the_fashion_model(no_system_data, fashion_model):
    at = on_fashion_model("pages/toggle.py", "conv1")
    test = core.load_dataset("fashion", "test")
    engine = core.Engine(fashion_model, test)
    assert abs(accuracy_shown(at) - engine.evaluate().accuracy) < 1e-4
    at.toggle[2].set_value(False).run()
    at.toggle[5].set_value(False).run()
    assert not at.exception and not at.error
    assert abs(accuracy_shown(at) - engine.evaluate({"conv1": [2, 5]}).accuracy) < 1e-4


def test_am_gallery_on_the_fashion_model(no_system_data):
    at = on_fashion_model("pages/am_gallery.py", "conv2")
    assert at.title[0].value == "Activation maximization — conv2"
    assert any("20 units, most important first" in c.value for c in at.caption)


def test_a_link_to_a_dataset_not_on_this_machine_says_so(no_system_data):
    at = app({"model": "lenet5_digits.pt", "dataset": "cifar10"})
    at.run()
    assert not at.exception
    assert at.sidebar.selectbox(key="dataset").value == "digits"
    assert any("is not available on this machine" in w.value for w in at.warning), [w.value for w in at.warning]


def test_a_link_opens_the_fashion_model_on_the_embedded_subset(no_system_data, fashion_model):
    at = app({"model": "lenet5_fashionmnist.pt", "dataset": "fashion", "layer": "conv1", "off": "4"})
    at.switch_page("pages/toggle.py")
    at.run()
    assert not at.exception and not at.error and not at.warning, [w.value for w in at.warning]
    assert at.title[0].value == "Live toggles — conv1"
    expected = core.evaluate(fashion_model, core.load_dataset("fashion", "test"), off={"conv1": [4]}).accuracy
    assert abs(accuracy_shown(at) - expected) < 1e-4


def app(query: dict):
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(ROOT / "explorer.py"), default_timeout=APP_TIMEOUT)
    for key, value in query.items():
        at.query_params[key] = value
    return at


@FULL
def test_every_page_renders_on_the_fashion_model_with_the_full_set():
    import re

    from ui.state import found_datasets

    found_datasets.clear()
    paths = re.findall(r'st\.Page\("(pages/[^"]+)"', (ROOT / "explorer.py").read_text())
    at = on_fashion_model()
    assert at.sidebar.selectbox(key="dataset").value == "fashionmnist"
    for path in paths:
        at.switch_page(path)
        at.run()
        assert not at.exception and not at.error, (path, [e.value for e in at.error])
        assert at.sidebar.selectbox(key="dataset").value == "fashionmnist", path


# --- the app's default view: the Fashion-MNIST model on the embedded subset (an explicit default) ----------------

def test_with_no_link_the_app_opens_on_the_fashion_model_and_the_embedded_subset(fashion_model):
    """On this machine the full set may be here too: the default view is still the embedded ``fashion``."""
    from ui.state import DEFAULT_DATASET, DEFAULT_MODEL, found_datasets, shipped_checkpoints

    found_datasets.clear()
    at = open_page(model=None)
    choice = at.sidebar.selectbox(key="model_choice")
    assert (DEFAULT_MODEL, DEFAULT_DATASET) == ("lenet5_fashionmnist.pt", "fashion")
    assert choice.value == "lenet5_fashionmnist.pt"
    assert shipped_checkpoints()[0].name == "lenet5_digits.pt"  # the first file sorted is not what opens
    assert at.sidebar.selectbox(key="dataset").value == "fashion"
    accuracy = next(m for m in at.metric if m.label.startswith("Test accuracy"))
    assert accuracy.value == f"{core.evaluate(fashion_model, core.load_dataset('fashion', 'test')).accuracy:.2%}"
    assert (at.query_params["model"], at.query_params["dataset"]) == ("lenet5_fashionmnist.pt", "fashion")
    assert any("opens on" in m.value and "lenet5_fashionmnist.pt" in m.value for m in at.markdown)
    at.switch_page("pages/toggle.py")
    at.run()
    assert abs(accuracy_shown(at) - core.Engine(fashion_model, core.load_dataset("fashion", "test")).evaluate().accuracy
               ) < 1e-4


def test_a_link_to_the_digits_model_still_opens_it_on_digits(model, digits_test):
    at = app({"model": "lenet5_digits.pt", "layer": "conv2", "off": "3"})
    at.switch_page("pages/toggle.py")
    at.run()
    assert not at.exception and not at.error and not at.warning, [w.value for w in at.warning]
    assert at.sidebar.selectbox(key="model_choice").value == "lenet5_digits.pt"
    assert at.sidebar.selectbox(key="dataset").value == "digits"
    expected = core.evaluate(model, digits_test, off={"conv2": [3]}).accuracy
    assert abs(accuracy_shown(at) - expected) < 1e-4


@pytest.mark.parametrize("query", [{"model": "nosuch.pt"}, {"layer": "conv2"}])
def test_a_link_without_a_usable_model_opens_the_default_view(query):
    at = app(query)
    at.run()
    assert not at.exception and not at.error
    assert at.sidebar.selectbox(key="model_choice").value == "lenet5_fashionmnist.pt"
    assert at.sidebar.selectbox(key="dataset").value == "fashion"


def test_a_link_with_a_dataset_but_no_model_keeps_its_dataset():
    at = app({"dataset": "digits"})
    at.run()
    assert not at.exception and not at.error and not at.warning
    assert at.sidebar.selectbox(key="model_choice").value == "lenet5_fashionmnist.pt"
    assert at.sidebar.selectbox(key="dataset").value == "digits"
