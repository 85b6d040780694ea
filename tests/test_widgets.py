"""The notebook widgets (explorer_widgets), driven from Python as a notebook user's clicks would drive them."""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

import core
import explorer_widgets as ew
from core.rankings.agreement import agreement_matrix, compare
from core.interpret.similarity import cluster_rows_image
from explorer_widgets._common import png

AM_STEPS = 32  # small: these tests check wiring, not AM quality


def visible(cells) -> int:
    return sum(cell.layout.display != "none" for cell in cells)


def state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_setting_a_toggle_shows_the_engines_accuracy_for_that_mask(model, digits_val):
    panel = ew.toggle_panel(model, digits_val, "conv2")
    engine = core.Engine(model, digits_val)
    assert panel.off == [] and panel.accuracy == engine.evaluate().accuracy
    strongest = panel.rankings["L1 norm"].top(3)  # switching the strongest units off must cost accuracy
    for unit in strongest:
        panel.toggle(unit).value = False
    expected = engine.evaluate({"conv2": sorted(strongest)})
    assert panel.off == sorted(strongest)
    assert expected.accuracy < panel.baseline.accuracy
    assert panel.accuracy == expected.accuracy and panel.result.loss == expected.loss
    assert f"<b>Accuracy</b> {expected.accuracy:.2%}" in panel.metrics.value
    assert "<b>Units off</b> 3 / 20" in panel.metrics.value
    np.testing.assert_array_equal(panel.per_class_chart.data[-1].y, np.nan_to_num(expected.per_class) * 100)
    np.testing.assert_array_equal(panel.confusion_chart.data[0].customdata, expected.confusion)
    assert [panel.toggle(u).button_style for u in strongest] == ["danger"] * 3

    panel.toggle(strongest[0]).value = True  # and back on
    again = engine.evaluate({"conv2": sorted(strongest[1:])})
    assert panel.off == sorted(strongest[1:]) and panel.accuracy == again.accuracy
    panel.all_on_button.click()
    assert panel.off == [] and panel.accuracy == panel.baseline.accuracy
    assert all(panel.toggle(u).value for u in range(20))
    panel.toggle(0).value = False
    panel.invert_button.click()
    assert panel.off == list(range(1, 20)) and panel.accuracy == engine.evaluate({"conv2": range(1, 20)}).accuracy


def test_turn_off_k_lowest_switches_off_exactly_the_rankings_lowest(model, digits_val):
    shapley = core.rank(model, digits_val, "conv2", "shapley", samples=10)
    l1 = core.rank(model, digits_val, "conv2", "l1")
    panel = ew.toggle_panel(model, digits_val, "conv2", rankings=[shapley, l1])
    engine = core.Engine(model, digits_val)
    assert list(panel.ranking_choice.options) == [shapley.label, l1.label]
    panel.ranking_choice.value = shapley.label
    panel.k.value = 6
    panel.lowest_button.click()
    assert panel.ranking is shapley
    assert panel.off == sorted(shapley.lowest(6))
    assert panel.accuracy == engine.evaluate({"conv2": shapley.lowest(6)}).accuracy
    assert [panel.toggle(u).value for u in range(20)] == [u not in shapley.lowest(6) for u in range(20)]

    panel.ranking_choice.value = l1.label
    panel.lowest_button.click()
    assert set(l1.lowest(6)) != set(shapley.lowest(6))  # else this half would prove nothing
    assert panel.off == sorted(l1.lowest(6))
    assert panel.accuracy == engine.evaluate({"conv2": l1.lowest(6)}).accuracy
    assert panel.turn_off_lowest(2, shapley.label) == sorted(shapley.lowest(2))


def test_cluster_slider_crosses_out_the_pruning_selection(model, digits_val):
    view = ew.cluster_view(model, digits_val, "conv2", steps=AM_STEPS)
    engine = core.Engine(model, digits_val)
    clusters = core.cluster_filters(model, digits_val, "conv2", steps=AM_STEPS)  # computed apart from the view
    assert view.clusters.members == clusters.members
    seen = set()
    for rate in (0.0, 0.1, 0.3, 0.6, 0.9):
        view.rate_slider.value = rate
        expected = core.pruning_selection(clusters, rate)
        assert view.removed == expected
        assert view.rows.value == png(cluster_rows_image(view.similarity.am.images, clusters, expected))
        assert f"{len(expected)} / 20: {', '.join(map(str, expected)) or 'none'}" in view.metrics.value
        assert view.result.accuracy == engine.evaluate({"conv2": expected}).accuracy
        seen.add(tuple(expected))
    assert len(seen) >= 3  # the slider really changed the selection


def test_a_widget_on_one_model_never_changes_another(model, digits_val):
    other = copy.deepcopy(model)
    with torch.no_grad():
        other.conv2[0].weight.mul_(-1.0)  # a different network
    before, before_other = state(model), state(other)
    a = ew.toggle_panel(model, digits_val, "conv2")
    b = ew.toggle_panel(other, digits_val, "conv2")
    same = ew.toggle_panel(model, digits_val, "conv2")  # a second panel on the same model
    assert a.engine is not b.engine and a.engine is not same.engine
    b_accuracy = core.Engine(other, digits_val).evaluate().accuracy
    a.set_off([0, 4, 7])
    a.toggle(9).value = False
    a.turn_off_lowest(5)
    assert a.off == sorted(a.ranking.lowest(5))
    assert b.off == [] and same.off == []
    assert b.accuracy == b.baseline.accuracy == b_accuracy
    assert same.accuracy == same.baseline.accuracy
    assert all(b.toggle(u).value and same.toggle(u).value for u in range(20))
    unit = next(u for u in range(20) if u not in a.off)
    b.toggle(unit).value = False
    assert b.off == [unit] and unit not in a.off and same.off == []
    for old, new in ((before, state(model)), (before_other, state(other))):
        assert all(torch.equal(old[k], new[k]) for k in old)


def test_a_512_unit_layer_is_paged_and_searchable(digits_val):
    torch.manual_seed(0)
    wide = core.lenet5(widths=(10, 20, 512, 25))  # fc1 has 512 units
    data = digits_val.subset(64)
    panel = ew.toggle_panel(wide, data, "fc1")
    assert len(panel._toggles) == 60 and visible(panel._cells) == 60
    assert panel.shown == list(range(60)) and panel.page.max == 9
    panel.page.value = 3
    assert panel.shown == list(range(120, 180))
    assert panel.toggle(120).description == "120: on"
    panel.toggle(125).value = False
    assert panel.off == [125]
    assert panel.accuracy == core.Engine(wide, data).evaluate({"fc1": [125]}).accuracy
    panel.page.value = 9
    assert panel.shown == list(range(480, 512)) and visible(panel._cells) == 32
    panel.find.value = "125, 500-502"
    assert panel.shown == [125, 500, 501, 502] and visible(panel._cells) == 4
    assert [panel.toggle(u).value for u in panel.shown] == [False, True, True, True]
    panel.find.value = "12x"
    assert "is not a unit number" in panel.message.value and panel.shown == [125, 500, 501, 502]
    with pytest.raises(ValueError, match="not shown"):
        panel.toggle(0)
    small = ew.toggle_panel(wide, data, "conv2")
    assert small.children[3].layout.display == "none"  # no pager for 20 units

    gallery = ew.am_gallery(wide, "fc1", steps=2)
    assert visible(gallery._cells) == 40 and gallery.shown == list(range(40))
    gallery.page.value = 13
    assert gallery.shown == list(range(480, 512))


def test_a_torchvision_model_without_the_prefix_cache(digits_val):
    """The engine's generic path (forward hooks): thumbnails from a hooked pass, accuracy from the engine."""
    torchvision = pytest.importorskip("torchvision")
    torch.manual_seed(0)
    net = torchvision.models.resnet18(num_classes=3).eval()
    data = core.DataSplit("random", "val", torch.rand(6, 3, 32, 32), torch.arange(6) % 3, ["a", "b", "c"])
    panel = ew.toggle_panel(net, data, "layer4.1.conv2")
    assert not panel.engine.staged and panel.units == 512 and len(panel.shown) == 60
    panel.toggle(7).value = False
    panel.toggle(30).value = False
    assert panel.off == [7, 30]
    np.testing.assert_array_equal(panel.result.predictions,
                                  core.Engine(net, data).evaluate({"layer4.1.conv2": [7, 30]}).predictions)


@pytest.mark.parametrize("make", [
    lambda m, d: ew.toggle_panel(m, d, "conv9"),
    lambda m, d: ew.ranking_view(m, d, "conv9", methods=["l1"]),
    lambda m, d: ew.am_gallery(m, "conv9"),
    lambda m, d: ew.cluster_view(m, d, "conv9"),
])
def test_unknown_layer_is_a_clear_message(model, digits_val, make):
    with pytest.raises(ValueError, match=r"unknown layer 'conv9'; prunable layers: conv1, conv2, fc1, fc2"):
        make(model, digits_val)


def test_ranking_view_shows_scores_side_by_side_and_agreement(model, digits_val):
    view = ew.ranking_view(model, digits_val, "conv2", methods=["l1", ("shapley", {"samples": 10}), "random"])
    labels = list(view.rankings)
    assert labels == ["L1 norm", view.rankings[labels[1]].label, view.rankings[labels[2]].label]
    assert view.chosen == "L1 norm"
    view.order_by.value = labels[1]
    shapley = view.rankings[labels[1]]
    assert list(view.scores_table().index) == list(shapley.order())
    assert list(view.bar_chart.data[0].x) == [f"unit {u}" for u in shapley.order()]
    np.testing.assert_array_equal(view.bar_chart.data[0].error_y.array, 1.96 * shapley.stderr[shapley.order()])
    for k in (3, 8):
        view.k_slider.value = k
        expected = compare(list(view.rankings.values()), k)
        assert view.agreement.equals(expected)
        assert f"{len(set(view.rankings['L1 norm'].top(k)) & set(shapley.top(k)))}/{k}" in view.agreement_table.value
    view.metric_choice.value = "spearman"
    np.testing.assert_allclose(view.heatmap.data[0].z, agreement_matrix(list(view.rankings.values()), "spearman").values)


def test_am_gallery_orders_by_the_chosen_ranking(model, digits_val):
    l1 = core.rank(model, digits_val, "conv2", "l1")
    gallery = ew.am_gallery(model, "conv2", ranking=l1, data=digits_val, steps=AM_STEPS)
    assert gallery.chosen == "L1 norm" and gallery.order == [int(u) for u in l1.order()]
    assert gallery.shown == gallery.order and gallery.unit == gallery.order[0]
    assert gallery._images[0].value == png(core.engine.plots.to_display(gallery.result.images[gallery.order[0]], size=112))
    gallery.order_by.value = "unit number"
    assert gallery.shown == list(range(20))
    gallery.unit_choice.value = 7
    assert gallery.close_up.value == png(core.engine.plots.to_display(gallery.result.images[7], size=240))
    assert len(gallery.top_images.children) == 8
