"""An uploaded drawing as the model's input: transparency flattened onto the background that keeps the strokes,
dark-on-light detected (and inverted on request), the model's prediction for it."""
from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

import core
from core.data import border_level, read_image, suggest_inversion

SHAPE = (1, 28, 28)


def drawing(ink: int, paper: int, alpha: int = 255) -> bytes:
    """A 7 drawn with ``ink`` on ``paper`` (grey levels); ``alpha`` < 255 makes the paper transparent."""
    img = Image.new("RGBA", (120, 120), (paper, paper, paper, alpha))
    draw = ImageDraw.Draw(img)
    draw.line([(25, 25), (95, 25), (50, 100)], fill=(ink, ink, ink, 255), width=12)
    buffer = io.BytesIO()
    (img if alpha < 255 else img.convert("RGB")).save(buffer, "PNG")
    return buffer.getvalue()


def test_dark_ink_on_white_paper_is_flagged_for_a_model_of_light_strokes_on_black(digits_val):
    assert border_level(digits_val.images) < 0.05  # the digits: light strokes on black
    dark_on_light, _ = read_image(drawing(ink=20, paper=250), "d.png", SHAPE)
    light_on_dark, _ = read_image(drawing(ink=250, paper=0), "l.png", SHAPE)
    assert suggest_inversion(dark_on_light, digits_val.images)
    assert not suggest_inversion(light_on_dark, digits_val.images)
    assert suggest_inversion(light_on_dark, 1.0 - digits_val.images)  # and the other way round
    photos = torch.rand(50, 1, 28, 28)  # varied backgrounds (border mean ~0.5): never flagged
    assert not suggest_inversion(dark_on_light, photos) and not suggest_inversion(light_on_dark, photos)


def test_inversion_is_one_minus_the_input_and_says_so():
    plain, steps = read_image(drawing(ink=20, paper=250), "d.png", SHAPE)
    inverted, inverted_steps = read_image(drawing(ink=20, paper=250), "d.png", SHAPE, invert=True)
    torch.testing.assert_close(inverted, 1.0 - plain)
    assert inverted_steps == steps + " -> inverted"


@pytest.mark.parametrize("ink, shade", [(20, "white"), (240, "black")])
def test_a_transparent_background_goes_onto_the_shade_that_keeps_the_strokes(ink, shade):
    image, steps = read_image(drawing(ink=ink, paper=0, alpha=0), "t.png", SHAPE)
    assert f"transparency flattened onto {shade}" in steps
    background = float(image[0, 0, 0])  # a corner: paper only
    stroke = float(image[0, 6, 14])  # on the 7's top bar
    assert abs(stroke - background) > 0.5  # the strokes are still there (dark ink onto black left all black)
    assert background == (1.0 if shade == "white" else 0.0)


def test_an_rgb_model_gets_the_same_background_rule():
    image, steps = read_image(drawing(ink=20, paper=0, alpha=0), "t.png", (3, 32, 32))
    assert image.shape == (3, 32, 32) and "onto white" in steps and float(image[:, 0, 0].min()) == 1.0


def test_the_prediction_is_the_models_own_and_its_probabilities_sum_to_one(model, digits_val):
    probabilities = core.class_probabilities(model, digits_val.images[:64])
    assert probabilities.shape == (64, 10)
    torch.testing.assert_close(probabilities.sum(-1), torch.ones(64))
    predictions = core.Engine(model, digits_val).evaluate().predictions[:64]
    assert np.array_equal(probabilities.argmax(-1).numpy(), predictions)
    (best, p), *others = core.predict(model, digits_val.images[0])
    assert best == digits_val.class_names[int(predictions[0])] and p == pytest.approx(float(probabilities[0].max()))
    assert len(others) == 2 and all(q <= p for _, q in others)


def test_an_inverted_drawing_of_a_seven_is_read_as_a_seven(model):
    """The whole point: the shipped model reads a 7 in dark ink on paper once it is inverted."""
    image, _ = read_image(drawing(ink=20, paper=250), "d.png", SHAPE, invert=True)
    (best, p), *_ = core.predict(model, image)
    assert best == "7" and p > 0.5
