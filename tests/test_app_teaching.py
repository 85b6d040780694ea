"""AppTest of the teaching features: Shapley by hand, the link that reproduces a view, explanations."""
from __future__ import annotations

from itertools import combinations
from math import factorial

import pytest
from streamlit.testing.v1 import AppTest

import core
from tests.conftest import APP_TIMEOUT, ROOT, open_page


def brute_force_shapley(model, data, layer: str, players: list[int]) -> dict[int, float]:
    """Paper A Eq. 2 over the players' subsets, every coalition evaluated by core.evaluate on its own."""
    def v(coalition) -> float:
        return core.evaluate(model, data, off={layer: [p for p in players if p not in coalition]}).accuracy
    n = len(players)
    values = {}
    for i in players:
        others = [p for p in players if p != i]
        values[i] = sum(factorial(len(c)) * factorial(n - len(c) - 1) / factorial(n) * (v(set(c) | {i}) - v(set(c)))
                        for size in range(n) for c in combinations(others, size))
    return values


def test_shapley_by_hand_shows_8_coalitions_6_orders_and_values_that_add_up(model, digits_val):
    at = open_page("pages/by_hand.py", layer="conv2")
    game = at.session_state["by_hand"]
    players = sorted(game.players)
    assert players == core.teaching_players(core.Engine(model, digits_val), "conv2")  # the default, by a rule
    assert len({tuple(m[p] for p in players) for _, m in game.orderings}) >= 2  # the order matters
    widest = max(players, key=lambda p: max(m[p] for _, m in game.orderings) - min(m[p] for _, m in game.orderings))
    low, high = (f(m[widest] for _, m in game.orderings) * 100 for f in (min, max))
    assert any(f"unit {widest} adds between {low:+.2f} and {high:+.2f} pts" in c.value for c in at.caption)
    coalitions, orders = at.table[0].value, at.table[1].value
    assert len(coalitions) == 8 and len(orders) == 7  # 6 orders + the average row
    expected = brute_force_shapley(model, digits_val, "conv2", players)
    for p in players:
        assert abs(game.values[p] - expected[p]) < 1e-9
        assert next(m for m in at.metric if m.label == f"φ(unit {p})").value == f"{game.values[p] * 100:+.3f} pts"
    everyone_on = core.evaluate(model, digits_val).accuracy
    nobody = core.evaluate(model, digits_val, off={"conv2": players}).accuracy
    assert abs(sum(game.values.values()) - (everyone_on - nobody)) < 1e-9
    # changing the players recomputes at once
    at.multiselect[0].set_value([0, 1, 2]).run()
    assert sorted(at.session_state["by_hand"].players) == [0, 1, 2]
    expected = brute_force_shapley(model, digits_val, "conv2", [0, 1, 2])
    assert all(abs(at.session_state["by_hand"].values[p] - expected[p]) < 1e-9 for p in (0, 1, 2))


def test_the_full_layer_values_sit_beside_the_small_game():
    at = open_page("pages/by_hand.py", layer="conv1")
    next(b for b in at.button if b.label.startswith("Compute the full layer")).click().run()
    assert not at.exception and not at.error
    table = at.table[2].value
    assert list(table.index) == sorted(at.session_state["by_hand"].players)
    assert "rank in the layer" in table.columns


def app(query: dict) -> AppTest:
    at = AppTest.from_file(str(ROOT / "explorer.py"), default_timeout=APP_TIMEOUT)
    for key, value in query.items():
        at.query_params[key] = value
    return at


def test_a_link_reopens_model_dataset_layer_units_off_and_ranking(model, digits_test):
    at = app({"model": "lenet5_digits.pt", "dataset": "digits", "layer": "conv2", "off": "3,7", "rank": "l2"})
    at.switch_page("pages/toggle.py")
    at.run()
    assert not at.exception and not at.error and not at.warning, [w.value for w in at.warning]
    assert at.title[0].value == "Live toggles — conv2"
    units_off = next(m for m in at.metric if m.label == "Units off").value
    assert units_off == "2 / 20"
    accuracy = next(m for m in at.metric if m.label.startswith("Accuracy")).value
    assert accuracy == f"{core.evaluate(model, digits_test, off={'conv2': [3, 7]}).accuracy:.2%}"
    assert at.selectbox(key="ranking").value.startswith("L2")
    assert [t.value for t in at.toggle][3] is False and [t.value for t in at.toggle][7] is False
    link = at.query_params
    assert (link["layer"], link["off"], link["rank"], link["model"]) == ("conv2", "3,7", "l2", "lenet5_digits.pt")
    at.toggle[5].set_value(False).run()  # the address bar follows the view
    assert at.query_params["off"] == "3,5,7"


@pytest.mark.parametrize("bad, said", [({"layer": "conv9"}, "layer 'conv9' is not a layer of this model"),
                                       ({"layer": "conv2", "off": "3,999"}, "unit(s) 999 do not exist in conv2"),
                                       ({"model": "nosuch.pt"}, "model 'nosuch.pt' is neither a shipped checkpoint"),
                                       ({"dataset": "imagenet"}, "dataset 'imagenet' is not one of")])
def test_a_link_with_bad_values_opens_the_closest_view_and_says_what_was_ignored(bad, said):
    at = app(bad)
    at.switch_page("pages/toggle.py")
    at.run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert any(said in w.value for w in at.warning), [w.value for w in at.warning]
    assert at.title[0].value.startswith("Live toggles")
    at.run()  # said once, not on every rerun
    assert not any(said in w.value for w in at.warning)


def test_every_page_explains_itself_open_on_the_first_visit_only_where_the_page_still_fits_720_pixels():
    at = open_page()
    first = at.expander[0]
    assert first.label == "What am I looking at?" and first.proto.expanded  # the overview fits with it open
    at.run()
    assert at.expander[0].label == "What am I looking at?" and not at.expander[0].proto.expanded
    for path in ("pages/toggle.py", "pages/rankings.py", "pages/similarity.py", "pages/by_hand.py"):
        at.switch_page(path)
        at.run()  # a first visit, collapsed: open, the box would push the page's headline below a 720-px screen
        assert at.expander[0].label == "What am I looking at?" and not at.expander[0].proto.expanded, path
        if path != "pages/toggle.py":
            assert len(at.get("latex")) >= 1, path  # the paper's formula, inside the box


def test_the_explanations_name_the_colours_the_charts_use():
    """Similar filters: SD is a distance drawn with a reversed Viridis, so 0 (the same function) is yellow and
    far apart is dark; feature maps are drawn in grey, strong = white."""
    from types import SimpleNamespace

    import numpy as np
    from plotly.colors import hex_to_rgb

    from core.rankings.plots import feature_map_grid
    from ui.explain import TEXTS

    def rgb(colour: str) -> tuple[int, ...]:
        return hex_to_rgb(colour) if colour.startswith("#") else tuple(int(float(v)) for v in colour[4:-1].split(","))

    scale = core.sd_figure(SimpleNamespace(sd=np.array([[0.0, 2.0], [2.0, 0.0]]))).data[0].colorscale
    (r, g, b), far = rgb(scale[0][1]), rgb(scale[-1][1])  # SD = 0, the largest SD
    assert r > 200 and g > 200 and b < 100 and sum(far) < 300
    reading = " ".join(TEXTS["similarity"][2])
    assert "yellow = similar" in reading and "dark = different" in reading and "dark = similar" not in reading
    l1 = core.rank(core.load_model(), core.load_dataset("digits", "val"), "conv1", "l1")
    grid = feature_map_grid(np.arange(10 * 4 * 4, dtype=np.float32).reshape(10, 4, 4), l1)
    strongest = grid.layout.coloraxis.colorscale[-1][1]
    assert min(rgb(strongest)) > 245 and "white = strong response" in " ".join(TEXTS["feature_maps"][2])
