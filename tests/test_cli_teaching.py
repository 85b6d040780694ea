"""``python -m core by-hand`` and ``python -m core predict``: the same numbers as the library, bad input one line."""
from __future__ import annotations

import io
import json

import pytest
from PIL import Image, ImageDraw

import core
from core.cli import main


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_by_hand_defaults_to_the_teaching_players_and_prints_the_games_numbers(capsys, model, digits_val):
    code, out, _ = run(capsys, "by-hand", "--layer", "conv2", "--json")
    payload = json.loads(out)
    engine = core.Engine(model, digits_val)
    assert code == 0 and payload["players"] == core.teaching_players(engine, "conv2") and payload["default_players"]
    game = core.shapley_by_hand(engine, "conv2", payload["players"])
    assert payload["values"] == {str(p): v for p, v in game.values.items()}
    assert len(payload["coalitions"]) == 8 and len(payload["orders"]) == 6
    assert len({tuple(o["marginals"].values()) for o in payload["orders"]}) >= 2
    code, out, _ = run(capsys, "by-hand", "--layer", "conv2", "--players", "0,1,2")
    assert code == 0 and out.startswith("conv2, players 0, 1, 2, 359 images") and "Shapley values" in out


@pytest.mark.parametrize("argv, said", [(["--layer", "conv9"], "unknown layer 'conv9'"),
                                        (["--layer", "conv2", "--players", "1,x"], "whole numbers"),
                                        (["--layer", "conv2", "--players", "1,99"], "conv2 has units 0..19")])
def test_by_hand_bad_input_is_one_line_and_exit_2(capsys, argv, said):
    code, _, err = run(capsys, "by-hand", *argv)
    assert code == 2 and said in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def seven(tmp_path, transparent: bool = False):
    img = Image.new("RGBA", (160, 160), (255, 255, 255, 0 if transparent else 255))
    ImageDraw.Draw(img).line([(35, 35), (125, 35), (65, 135)], fill=(25, 25, 25, 255), width=16)
    path = tmp_path / "seven.png"
    (img if transparent else img.convert("RGB")).save(path)
    return path


def test_predict_inverts_a_drawing_on_paper_when_asked_to_decide(capsys, tmp_path, model):
    path = seven(tmp_path)
    code, out, _ = run(capsys, "predict", "--image", str(path), "--json")
    payload = json.loads(out)
    assert code == 0 and payload["inversion_suggested"] and payload["inverted"]
    image, _ = core.read_image(path.read_bytes(), path.name, model.meta.input_shape, invert=True)
    (best, p), *_ = core.predict(model, image)
    assert payload["predictions"][0] == {"class": best, "probability": p} and best == "7"
    code, out, _ = run(capsys, "predict", "--image", str(path), "--invert", "no", "--json")
    assert not json.loads(out)["inverted"]
    code, out, _ = run(capsys, "predict", "--image", str(seven(tmp_path, transparent=True)))
    assert code == 0 and "transparency flattened onto white" in out and "  7: " in out


def test_predict_bad_input_is_one_line_and_exit_2(capsys, tmp_path):
    code, _, err = run(capsys, "predict", "--image", str(tmp_path / "missing.png"))
    assert code == 2 and "no file at" in err
    (tmp_path / "noise.png").write_bytes(b"not an image at all")
    code, _, err = run(capsys, "predict", "--image", str(tmp_path / "noise.png"))
    assert code == 2 and "noise.png is not an image this app can read" in err and "Traceback" not in err
