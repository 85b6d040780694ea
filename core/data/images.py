"""Images converted to a model's input: PIL images, uploaded bytes and whole batches."""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from .split import DataError

def image_to_tensor(img: Image.Image, input_shape: Sequence[int]) -> tuple[torch.Tensor, str]:
    """Convert any PIL image to a (C, H, W) tensor in [0, 1]; also say what was done."""
    channels, height, width = input_shape
    steps = [f"{img.width}x{img.height} {img.mode}"]
    if getattr(img, "n_frames", 1) > 1:
        img.seek(0)
        steps.append("first frame")
    if img.mode.startswith("I") or img.mode == "F":  # 16/32-bit: PIL's convert() would clip, not scale
        array = np.asarray(img, dtype=np.float64)
        top = 65535.0 if img.mode != "F" else (1.0 if array.max() <= 1.0 else 255.0)
        img = Image.fromarray(np.clip(np.round(array / top * 255.0), 0, 255).astype(np.uint8))
        steps.append("scaled to 8-bit")
    if img.mode in ("RGBA", "LA", "P") or "transparency" in img.info:
        rgba = img.convert("RGBA")
        shade = _contrasting_background(rgba)
        img = Image.alpha_composite(Image.new("RGBA", rgba.size, (shade, shade, shade, 255)), rgba)
        steps.append(f"transparency flattened onto {'white' if shade else 'black'}")
    target_mode = "L" if channels == 1 else "RGB"
    if img.mode != target_mode:
        img = img.convert(target_mode)
        steps.append("to grayscale" if channels == 1 else "to RGB")
    if img.size != (width, height):
        img = img.resize((width, height), Image.Resampling.BILINEAR)
        steps.append(f"resized to {width}x{height}")
    array = np.asarray(img, dtype=np.float32) / 255.0
    tensor = torch.from_numpy(array).unsqueeze(0) if channels == 1 else torch.from_numpy(array).permute(2, 0, 1)
    return tensor.contiguous(), " -> ".join(steps)


def _contrasting_background(rgba: Image.Image) -> int:
    """0 (black) or 255 (white): the shade that contrasts with the picture's visible pixels, so that a drawing
    on a transparent background keeps its strokes (dark ink onto white, light ink onto black)."""
    array = np.asarray(rgba, dtype=np.float64)
    alpha = array[..., 3] / 255.0
    if alpha.sum() == 0:
        return 0
    ink = (array[..., :3].mean(-1) * alpha).sum() / alpha.sum() / 255.0
    return 255 if ink < 0.5 else 0


def border_level(images: torch.Tensor, width: int = 2) -> float:
    """The mean brightness in [0, 1] of the outer ``width`` pixels of (N, C, H, W) or (C, H, W) images: the
    background a dataset's pictures (or one drawing) sit on."""
    images = images if images.dim() == 4 else images.unsqueeze(0)
    frame = torch.ones(images.shape[-2:], dtype=torch.bool)
    frame[width:-width, width:-width] = False
    return float(images[..., frame].float().mean())


def suggest_inversion(image: torch.Tensor, reference: torch.Tensor) -> bool:
    """Whether ``image`` (C, H, W) sits on the opposite background of the model's data ``reference``
    (N, C, H, W): dark ink on white paper for a model that learned light strokes on black (MNIST style), or the
    reverse. Only when the reference has a plain background (border mean below 0.25 or above 0.75): photos
    on varied backgrounds are never flagged."""
    expected, seen = border_level(reference), border_level(image)
    return (expected < 0.25 and seen > 0.5) or (expected > 0.75 and seen < 0.5)


def read_image(content: bytes, name: str, input_shape: Sequence[int], invert: bool = False) -> tuple[torch.Tensor, str]:
    """An uploaded file's bytes as the model's input (see ``image_to_tensor``), its brightness inverted when
    ``invert`` (see ``suggest_inversion``); a file that is not an image PIL can decode (or is absurdly large) is
    a DataError that names the file and says what to do."""
    import io

    from PIL import UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(content)) as img:
            img.load()
            tensor, steps = image_to_tensor(img, input_shape)
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, SyntaxError, ValueError):
        raise DataError(f"{name} is not an image this app can read: upload a PNG or JPEG picture") from None
    return (1.0 - tensor, steps + " -> inverted") if invert else (tensor, steps)


def convert_images(images: torch.Tensor, input_shape: Sequence[int]) -> torch.Tensor:
    """Batch conversion of channels and size (grayscale <-> RGB, bilinear resize)."""
    channels, height, width = input_shape
    if images.shape[1] != channels:
        images = images.mean(1, keepdim=True) if channels == 1 else images.expand(-1, channels, -1, -1)
    if images.shape[2:] != (height, width):
        images = F.interpolate(images, size=(height, width), mode="bilinear", align_corners=False)
    return images.clamp(0, 1).contiguous()

