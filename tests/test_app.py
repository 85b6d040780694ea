"""AppTest: the shell, the overview and the live-toggle page. open_page pins the digits model (these tests compare
with core.load_model() on digits); every page also renders on the app's own default (the Fashion-MNIST model)."""
from __future__ import annotations

import re

import torch
from streamlit.testing.v1 import AppTest

import core
from tests.conftest import ROOT, open_page

def accuracy_shown(at: AppTest) -> float:
    metric = next(m for m in at.metric if m.label.startswith("Accuracy"))
    return float(metric.value.rstrip("%")) / 100


def test_overview_shows_architecture_and_test_accuracy(model, digits_test):
    at = open_page()
    assert not at.error
    assert at.title[0].value == "Neuron Ranking Explorer"
    accuracy = next(m for m in at.metric if m.label.startswith("Test accuracy"))
    assert accuracy.value == f"{core.evaluate(model, digits_test).accuracy:.2%}"
    table = at.dataframe[0].value
    assert list(table["layer"]) == ["conv1", "conv2", "fc1", "fc2"]
    assert list(table["units"]) == [10, 20, 100, 25]


def test_every_page_renders_on_the_default():
    paths = re.findall(r'st\.Page\("(pages/[^"]+)"', (ROOT / "explorer.py").read_text())
    assert "pages/toggle.py" in paths
    for path in paths:
        at = open_page(path, model=None)  # no link: the app's default view (lenet5_fashionmnist.pt on fashion)
        assert at.sidebar.selectbox(key="model_choice").value == "lenet5_fashionmnist.pt", path
        assert not at.error, (path, [e.value for e in at.error])


def test_toggling_a_conv1_filter_changes_the_accuracy(model, digits_test):
    at = open_page("pages/toggle.py")
    at.sidebar.selectbox(key="layer").set_value("conv1").run()
    before = accuracy_shown(at)
    assert abs(before - core.evaluate(model, digits_test).accuracy) < 1e-4
    at.toggle[0].set_value(False).run()
    assert not at.exception
    after = accuracy_shown(at)
    assert after != before
    assert abs(after - core.evaluate(model, digits_test, off={"conv1": [0]}).accuracy) < 1e-4


def test_two_sessions_keep_their_own_masks_and_the_cached_model_is_unchanged(model, digits_test):
    from ui.state import cached_model

    first, second = open_page("pages/toggle.py"), open_page("pages/toggle.py")
    for at in (first, second):
        at.sidebar.selectbox(key="layer").set_value("conv2").run()
    first.toggle[3].set_value(False).run()
    second.toggle[7].set_value(False).run()
    second.toggle[11].set_value(False).run()
    first.run()
    assert abs(accuracy_shown(first) - core.evaluate(model, digits_test, off={"conv2": [3]}).accuracy) < 1e-4
    assert abs(accuracy_shown(second) - core.evaluate(model, digits_test, off={"conv2": [7, 11]}).accuracy) < 1e-4
    shared = cached_model(str(core.DEFAULT_CHECKPOINT))
    fresh = core.load_model()
    for key, value in fresh.state_dict().items():
        assert torch.equal(shared.state_dict()[key], value), key


def test_turn_off_k_lowest_by_l1(model, digits_test):
    from core.rankings import rank

    at = open_page("pages/toggle.py")
    at.sidebar.selectbox(key="layer").set_value("conv2").run()
    at.number_input[0].set_value(4).run()
    next(b for b in at.button if b.label.startswith("Turn off")).click().run()
    lowest = rank(model, core.load_dataset("digits", "val"), layer="conv2", method="l1").lowest(4)
    expected = core.evaluate(model, digits_test, off={"conv2": lowest}).accuracy
    assert abs(accuracy_shown(at) - expected) < 1e-4
    assert [t.value for t in at.toggle].count(False) == 4


def test_bad_uploaded_checkpoint_is_refused_with_a_message():
    at = open_page()
    at.sidebar.selectbox(key="model_choice").set_value("Checkpoint path…").run()
    at.sidebar.text_input(key="ckpt_path").input(str(ROOT / "tasks.py")).run()
    assert not at.exception
    assert any("not a readable PyTorch checkpoint" in e.value for e in at.sidebar.error)


def test_a_512_unit_vgg_layer_is_paged_and_toggles_work(tmp_path):
    """A full-width VGG-16 (random weights) on a user's ImageFolder: conv13 has 512 units."""
    import numpy as np
    from PIL import Image

    torch.manual_seed(0)
    vgg = core.vgg16(1.0)
    vgg.meta = core.ModelMeta("vgg16", {"width_mult": 1.0}, (3, 32, 32), [f"class{i}" for i in range(3)],
                              [0.5] * 3, [0.25] * 3, dataset="imagefolder")
    vgg.fc2 = torch.nn.Linear(512, 3)
    core.save_checkpoint(vgg, tmp_path / "vgg.pt")
    rng = np.random.default_rng(0)
    for c in range(3):
        (tmp_path / "images" / f"class{c}").mkdir(parents=True)
        for i in range(8):
            pixels = rng.integers(0, 255, (40, 36, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(tmp_path / "images" / f"class{c}" / f"{i}.png")

    at = open_page("pages/toggle.py")
    at.sidebar.selectbox(key="model_choice").set_value("Checkpoint path…").run()
    at.sidebar.text_input(key="ckpt_path").input(str(tmp_path / "vgg.pt")).run()
    at.sidebar.text_input(key="data_root").input(str(tmp_path / "images")).run()
    at.sidebar.selectbox(key="layer").set_value("conv13").run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert len(at.toggle) == 60  # one page of the 512 units
    at.number_input(key="page:conv13").set_value(3).run()
    assert at.toggle[0].label == "120"
    at.toggle[0].set_value(False).run()
    assert next(m for m in at.metric if m.label == "Units off").value == "1 / 512"
    at.text_input(key="find:conv13").input("120, 500-502").run()
    assert [t.label for t in at.toggle] == ["120", "500", "501", "502"]
    assert [t.value for t in at.toggle] == [False, True, True, True]


def test_sidebar_choices_survive_switching_pages():
    at = open_page()
    at.sidebar.selectbox(key="layer").set_value("fc1").run()
    at.switch_page("pages/toggle.py")
    at.run()
    assert at.title[0].value == "Live toggles — fc1"
    assert len(at.toggle) == 60  # fc1 has 100 units: paged


def test_a_torchvision_model_offline_is_explored_on_the_converted_digits():
    """No internet, no ImageNet folder: the digits, converted to its 3x224x224 input, said plainly."""
    at = open_page()
    at.sidebar.selectbox(key="model_choice").set_value("torchvision model…").run()
    at.sidebar.checkbox(key="tv_pretrained").uncheck().run()
    at.sidebar.text_input(key="tv_name").input("mobilenet_v3_small").run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert at.sidebar.selectbox(key="dataset").value == "digits"
    assert any("converted to this model's 3x224x224 input" in i.value and "means nothing" in i.value
               for i in at.sidebar.info)
    assert any(m.label.startswith("Test accuracy") for m in at.metric)


def test_a_corrupt_checkpoint_says_what_to_do_in_the_sidebar_and_the_page(tmp_path):
    noise = tmp_path / "noise.pt"
    noise.write_bytes(bytes(range(256)) * 40)
    at = open_page()
    at.sidebar.selectbox(key="model_choice").set_value("Checkpoint path…").run()
    at.sidebar.text_input(key="ckpt_path").input(str(noise)).run()
    assert not at.exception
    message = at.sidebar.error[0].value
    assert "not a readable PyTorch checkpoint" in message and "choose a .pt file" in message
    assert "Error" not in message and "index" not in message  # no loader internals (IndexError: list index...)
    assert any("the sidebar says why" in w.value for w in at.warning)


def test_the_overview_says_where_to_start():
    at = open_page()
    assert any("Where to start" in m.value for m in at.markdown)
    links = [link.proto.page for link in at.get("page_link")]
    assert "toggle" in links and "rankings" in links, links


def test_a_misconfigured_server_says_what_to_fix_without_a_traceback(monkeypatch):
    """A bad NRE_THREADS or NRE_COMPUTE_POLICY: one line naming the variable, no exception, threads untouched."""
    threads = torch.get_num_threads()
    for name, value in (("NRE_THREADS", "lots"), ("NRE_COMPUTE_POLICY", "fast")):
        monkeypatch.setenv(name, value)
        at = AppTest.from_file(str(ROOT / "explorer.py"), default_timeout=120)
        at.run()
        assert not at.exception, at.exception
        assert [e.value for e in at.error] == [
            f"This server is misconfigured: {name} must be "
            + ("a whole number of threads >= 1 (got 'lots')" if name == "NRE_THREADS" else "'on' or 'off' (got 'fast')")
            + ". Fix the environment variable and restart the app."]
        monkeypatch.delenv(name)
    assert torch.get_num_threads() == threads
