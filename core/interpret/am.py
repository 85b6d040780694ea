"""Activation maximization (paper B Eq. 1): the input that makes each unit of a layer fire most.

Every unit of a layer is optimized at once: a batch with one image per unit, where image i
is scored only by unit i. The image is not optimized pixel by pixel (that gives high-frequency
noise) but through the regularizers of Lucid / Lucent that give natural-looking patterns:

- a *Fourier parameterization*: the free parameters are the image's 2-D spectrum, scaled by
  1/frequency, so low frequencies move first (Olah et al., "Feature Visualization", 2017);
- *decorrelated colour* for RGB models: the spectrum lives in a decorrelated colour basis that
  a fixed matrix maps to RGB (ImageNet's colour covariance square root, as in Lucid);
- *transformation robustness*: every step sees the image randomly shifted, scaled and rotated;
- a sigmoid keeps the result in the model's input range [0, 1].

Objective: the mean activation of unit i over its feature map, at the layer's mask point (after
BN and ReLU; for an fc layer, the neuron itself). ReLUs pass a "redirected" gradient while they
block everything (as Lucid does), so a unit that is silent on the starting noise still learns.
The model is used in eval mode; its weights are left as they are (autograd is asked for the image's
gradient only), and its layer outputs are read by hooks private to the calling thread
(``core.network.hooks``): the model may be shared by app sessions.
"""
from __future__ import annotations

import math
import time
import weakref
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw, ImageFont
from torch import nn

from ..engine.cache import cached
from ..engine.compute import checkpoint
from ..network.hooks import module_input, module_output
from ..network.models import is_staged, layer_names, mask_point, unit_count, weight_module

Progress = Callable[[int, int], None]
AM_VERSION = 1  # bump when the algorithm changes, so stale cache entries are not reused

# Square root of ImageNet's RGB colour correlation (Lucid's color_correlation_svd_sqrt).
_COLOR_SQRT = torch.tensor([[0.26, 0.09, 0.02], [0.27, 0.00, -0.05], [0.27, -0.09, 0.03]])
_COLOR_SQRT = _COLOR_SQRT / _COLOR_SQRT.norm(dim=0).max()


@dataclass
class AMResult:
    """AM images of every unit of one layer."""

    layer: str
    images: np.ndarray  # (units, C, H, W) float32 in [0, 1]; images[i] maximizes unit i
    response: np.ndarray  # (units, units): response[i, j] = mean activation of unit j on images[i]
    params: dict = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def units(self) -> int:
        return len(self.images)

    def selectivity(self) -> float:
        """Share of units that their own image drives more than any other unit's image does."""
        own = np.diag(self.response)
        others = np.where(np.eye(self.units, dtype=bool), -np.inf, self.response).max(0)
        return float(np.mean(own > others)) if self.units > 1 else 1.0

    def save_pngs(self, out_dir: str | Path, scale: int | None = None, labels: Sequence[str] | None = None) -> list[Path]:
        """One PNG per unit (``unit_000.png`` ...) plus ``contact_sheet.png``; returns the paths."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        paths = []
        for unit, image in enumerate(self.images):
            path = out / f"unit_{unit:03d}.png"
            to_pil(image, scale).save(path)
            paths.append(path)
        sheet = out / "contact_sheet.png"
        contact_sheet(self.images, labels=labels or [f"{self.layer} #{u}" for u in range(self.units)],
                      scale=scale).save(sheet)
        return paths + [sheet]


# --- image parameterization -----------------------------------------------------------------

def _spectrum_scale(h: int, w: int, decay_power: float = 1.0) -> torch.Tensor:
    """1 / frequency for each rfft2 coefficient (frequency floored at 1/size): a 1/f image prior."""
    fy = torch.fft.fftfreq(h).view(-1, 1)
    fx = torch.fft.rfftfreq(w).view(1, -1)
    freqs = torch.sqrt(fx * fx + fy * fy)
    return 1.0 / torch.clamp(freqs, min=1.0 / max(h, w)) ** decay_power


class FourierImage(nn.Module):
    """A batch of images parameterized by their frequency-scaled spectrum (Lucid's fft_image)."""

    def __init__(self, batch: int, channels: int, h: int, w: int, sd: float = 0.01,
                 generator: torch.Generator | None = None):
        super().__init__()
        self.size = (h, w)
        shape = (batch, channels, h, w // 2 + 1, 2)
        self.spectrum = nn.Parameter(torch.randn(shape, generator=generator) * sd)
        self.register_buffer("scale", _spectrum_scale(h, w)[None, None, :, :, None])

    def forward(self) -> torch.Tensor:
        spectrum = torch.view_as_complex((self.scale * self.spectrum).contiguous())
        image = torch.fft.irfft2(spectrum, s=self.size, norm="ortho") / 4.0  # Lucid's constant
        if image.shape[1] == 3:  # decorrelated colour basis -> RGB
            # one batched matmul over the pixels: the einsum it replaces (same values, bit for bit) permuted
            # and copied the whole batch, a fifth of a ResNet-18 conv1 step at 224x224
            image = (_COLOR_SQRT.to(image.device) @ image.flatten(2)).view_as(image)
        return torch.sigmoid(image)  # in the model's input range [0, 1]


def random_transform(images: torch.Tensor, generator: torch.Generator, jitter: float = 0.08,
                     scale: tuple[float, float] = (0.9, 1.1), degrees: float = 10.0) -> torch.Tensor:
    """Each image randomly shifted (fraction of its size), scaled and rotated; edges reflected."""
    b = images.shape[0]
    rand = lambda: torch.rand(b, generator=generator).to(images.device)  # noqa: E731
    angle = (rand() * 2 - 1) * math.radians(degrees)
    zoom = scale[0] + rand() * (scale[1] - scale[0])
    shift = (torch.stack([rand(), rand()], 1) * 2 - 1) * jitter * 2  # affine_grid coordinates span 2
    cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
    theta = torch.stack([torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1)
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


# --- the network side -----------------------------------------------------------------------

class _RedirectedReLU(torch.autograd.Function):
    """ReLU whose backward lets gradient through where the ReLU blocks it for a whole image,
    but only in the direction that would raise the pre-activation (Lucid's redirected ReLU)."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x.clamp(min=0)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        relu_grad = torch.where(x < 0, torch.zeros_like(grad), grad)
        redirected = torch.where((x < 0) & (grad > 0), torch.zeros_like(grad), grad)  # grad > 0: descent lowers x
        blocked = relu_grad.flatten(1).norm(dim=1) == 0
        return torch.where(blocked.view(-1, *[1] * (x.dim() - 1)), redirected, relu_grad)


def _run_module(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    if isinstance(module, nn.ReLU):
        return _RedirectedReLU.apply(x)
    if isinstance(module, nn.Sequential):
        for child in module:
            x = _run_module(child, x)
        return x
    return module(x)


_PER_CHANNEL = (nn.ReLU, nn.MaxPool2d, nn.AvgPool2d, nn.Identity, nn.Dropout)


def _own_unit_block(block: nn.Module | Sequence[nn.Module], x: torch.Tensor, units: torch.Tensor) -> torch.Tensor | None:
    """The block's output for image b restricted to its own unit ``units[b]``: (B, 1, ...).

    Conv/linear, eval-mode BatchNorm, ReLU and pooling all act per output channel, so image b
    needs only filter ``units[b]``: one grouped conv instead of every filter on every image.
    ``block``: a staged block, or the modules (the conv and its BatchNorm) run one after the other.
    None when the block holds anything else (the caller then runs the whole block)."""
    modules = list(block) if isinstance(block, (nn.Sequential, list, tuple)) else [block]
    if not isinstance(modules[0], (nn.Conv2d, nn.Linear)) or getattr(modules[0], "groups", 1) != 1 or \
            not all(isinstance(m, _PER_CHANNEL + (nn.BatchNorm2d, nn.BatchNorm1d)) for m in modules[1:]):
        return None
    first, b = modules[0], x.shape[0]
    weight, bias = first.weight[units], None if first.bias is None else first.bias[units]
    if isinstance(first, nn.Conv2d):
        if first.padding_mode != "zeros":
            return None
        out = F.conv2d(x.reshape(1, -1, *x.shape[2:]), weight, bias, first.stride, first.padding,
                       first.dilation, groups=b)
        x = out.view(b, 1, *out.shape[2:])
    else:
        x = (torch.einsum("bi,bi->b", x, weight) + (0 if bias is None else bias)).view(b, 1)
    for module in modules[1:]:
        if isinstance(module, (nn.BatchNorm2d, nn.BatchNorm1d)):
            if module.running_mean is None or module.weight is None:
                return None
            shape = (b, 1) + (1,) * (x.dim() - 2)
            scale = (module.weight[units] / torch.sqrt(module.running_var[units] + module.eps)).view(shape)
            x = (x - module.running_mean[units].view(shape)) * scale + module.bias[units].view(shape)
        else:
            x = _run_module(module, x)
    return x


_GENERIC_OWN: "weakref.WeakKeyDictionary[nn.Module, dict[str, bool]]" = weakref.WeakKeyDictionary()


def _generic_own_unit(model: nn.Module, layer: str, images: torch.Tensor, units: torch.Tensor) -> torch.Tensor | None:
    """Any other model (torchvision): the layer's conv/linear input read by a hook private to this thread (the
    pass stops there), then only each image's own filter and its BatchNorm up to the mask point. Profiled on
    ResNet-18 conv1 (64 units, 224x224, one thread): the full conv and BatchNorm of all 64 filters on all 64
    images, forward and backward, were 2/3 of a step. None where the shortcut does not apply: the layer is
    not a plain conv/linear feeding its mask point directly (checked once per model and layer against the
    full layer on two images)."""
    modules = [weight_module(model, layer)]
    point = mask_point(model, layer)
    if point is not modules[0]:
        modules.append(point)
    known = _GENERIC_OWN.setdefault(model, {})
    if layer not in known:
        known[layer] = False
        try:
            with torch.no_grad():
                few, which = images[:2].detach(), units[:2]
                own = _own_unit_block(modules, module_input(model, modules[0], few), which)
                full = layer_output(model, layer, few)
                known[layer] = own is not None and own.shape[2:] == full.shape[2:] and torch.allclose(
                    unit_means(own)[:, 0], unit_means(full)[torch.arange(len(which)), which], rtol=1e-4, atol=1e-5)
        except Exception:  # noqa: BLE001  any model the shortcut cannot read: the full layer path is exact
            known[layer] = False
    if not known[layer]:
        return None
    return _own_unit_block(modules, module_input(model, modules[0], images), units)


def own_unit_means(model: nn.Module, layer: str, images: torch.Tensor, units: torch.Tensor) -> torch.Tensor:
    """(B,): mean activation of unit ``units[b]`` on image b (the AM objective), computing only that unit
    in the layer itself (staged models; other models where the layer's conv feeds its mask point directly)."""
    if is_staged(model):
        for name, block in model.named_children():
            if name == layer:
                own = _own_unit_block(block, images, units)
                if own is not None:
                    return unit_means(own)[:, 0]
                break
            images = _run_module(block, images)
        else:
            raise KeyError(layer)
        return unit_means(_run_module(block, images))[torch.arange(len(units), device=units.device), units]
    own = _generic_own_unit(model, layer, images, units)
    if own is not None:
        return unit_means(own)[:, 0]
    return unit_means(layer_output(model, layer, images))[torch.arange(len(units), device=units.device), units]


@contextmanager
def evaluating(model: nn.Module) -> Iterator[nn.Module]:
    """The model's modules in eval mode for the block, the ones found in train mode put back after.

    Weights keep their ``requires_grad`` (AM asks autograd for the image's gradient only): flipping it on a
    model that other sessions run at the same time would race (one call's restore undoes another's)."""
    training = [m for m in model.modules() if m.training]
    for module in training:
        module.training = False
    try:
        yield model
    finally:
        for module in training:
            module.training = True


def layer_output(model: nn.Module, layer: str, images: torch.Tensor) -> torch.Tensor:
    """The layer's output (at its mask point) for ``images``; staged models stop there."""
    if is_staged(model):
        for name, block in model.named_children():
            images = _run_module(block, images)
            if name == layer:
                return images
        raise KeyError(layer)
    return module_output(model, mask_point(model, layer), images)  # a hook private to this thread


def unit_means(output: torch.Tensor) -> torch.Tensor:
    """(B, units, ...) -> (B, units): each unit's mean activation over its feature map."""
    return output.flatten(2).mean(2) if output.dim() > 2 else output


# --- AM ---------------------------------------------------------------------------------------

MIN_SIZE = 32  # the smallest AM image side a torchvision model is offered (ResNet-18's layer4 map is then 1x1)


def check_am_params(model: nn.Module, layer: str, steps: int, lr: float, size: int | None = None) -> None:
    names = layer_names(model)
    if layer not in names:
        raise ValueError(f"unknown layer {layer!r}; prunable layers: {', '.join(names)}")
    if steps < 1:
        raise ValueError(f"steps must be at least 1 (got {steps})")
    if not lr > 0:
        raise ValueError(f"learning rate must be positive (got {lr})")
    if size is not None:
        _, h, w = input_shape_of(model)
        if is_staged(model) and (size, size) != (h, w):
            raise ValueError(f"this model takes exactly {h}x{w} images, so its AM images are {h} pixels (a "
                             f"torchvision model takes other sizes; got size {size})")
        if size < MIN_SIZE:
            raise ValueError(f"AM images need at least {MIN_SIZE} pixels a side (got {size})")


def input_shape_of(model: nn.Module) -> tuple[int, int, int]:
    """(C, H, W) the model takes: from its metadata, else 28x28 (1 channel) or 32x32 (3 channels)."""
    meta = getattr(model, "meta", None)
    if meta is not None:
        return tuple(meta.input_shape)
    first = next(m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear)))
    channels = getattr(first, "in_channels", 1)
    return (channels, 28, 28) if channels == 1 else (channels, 32, 32)


def optimize_units(model: nn.Module, layer: str, units: Sequence[int], steps: int = 256, lr: float = 0.05,
                   seed: int = 0, progress: Progress | None = None, size: int | None = None) -> torch.Tensor:
    """AM images (len(units), C, H, W) in [0, 1] for the given units of ``layer``, optimized as one batch;
    ``size``: H = W of the images (default the model's input; a torchvision model takes smaller ones)."""
    channels, h, w = input_shape_of(model)
    h, w = (size, size) if size else (h, w)
    device = next(model.parameters()).device
    generator = torch.Generator().manual_seed(seed)
    index = torch.as_tensor(list(units), device=device)
    with evaluating(model), torch.enable_grad():
        param = FourierImage(len(index), channels, h, w, generator=generator).to(device)
        optimizer = torch.optim.Adam(param.parameters(), lr=lr)
        for step in range(steps):
            checkpoint()  # a cancelled session's AM stops here (core.engine.compute)
            optimizer.zero_grad()
            loss = -own_unit_means(model, layer, random_transform(param(), generator), index).sum()
            loss.backward(inputs=list(param.parameters()))  # the image's gradient only: no .grad on shared weights
            optimizer.step()
            if progress is not None:
                progress(step + 1, steps)
        return param().detach()


@torch.no_grad()
def responses(model: nn.Module, layer: str, images: torch.Tensor) -> torch.Tensor:
    """(images, units): mean activation of every unit of ``layer`` on each image."""
    with evaluating(model):
        device = next(model.parameters()).device
        return unit_means(layer_output(model, layer, images.to(device)))


def am_images(model: nn.Module, layer: str, steps: int = 256, lr: float = 0.05, seed: int = 0,
              progress: Progress | None = None, cache: bool = True, size: int | None = None) -> AMResult:
    """AM image of every unit of ``layer`` (conv filters or fc neurons), all optimized in one batch.

    ``size``: the images' side in pixels (default the model's input size). A torchvision model takes
    smaller images too: its cost per step grows with the pixels times the network up to the layer
    (ResNet-18 layer4, 512 units: about 75 s a step at 224, 6 s at 64 on one CPU thread).
    Cached on disk by checkpoint hash, layer and parameters. ``progress(step, steps)`` is called
    each optimization step (not on a cache hit)."""
    check_am_params(model, layer, steps, lr, size)
    params = {"steps": int(steps), "lr": float(lr), "seed": int(seed)}
    if size is not None and size != input_shape_of(model)[1]:
        params["size"] = int(size)  # the default size keeps the key it always had
    n = unit_count(model, layer)

    def compute():
        start = time.perf_counter()
        images = optimize_units(model, layer, range(n), steps, lr, seed, progress, params.get("size"))
        response = responses(model, layer, images)
        return ({"images": images.cpu().numpy().astype(np.float32),
                 "response": response.cpu().numpy().astype(np.float32)},
                {"seconds": time.perf_counter() - start})

    if cache:
        from ..network.models import weights_digest  # the weights themselves: an edited copy never hits a stale entry

        meta = getattr(model, "meta", None)
        key = {"checkpoint": getattr(meta, "sha256", ""), "weights": weights_digest(model),
               "input_shape": list(input_shape_of(model)), "layer": layer, "version": AM_VERSION, **params}
        arrays, info = cached("am", key, compute)
    else:
        arrays, info = compute()
    return AMResult(layer, arrays["images"], arrays["response"], params, float(info["seconds"]))


# --- display / export -------------------------------------------------------------------------

def display_scale(size: int, target: int = 112) -> int:
    """Integer nearest-neighbour upscale factor that brings a ``size``-pixel image near ``target``."""
    return max(1, round(target / max(1, size)))


def to_pil(image: np.ndarray | torch.Tensor, scale: int | None = None) -> Image.Image:
    """(C, H, W) or (H, W) in [0, 1] -> PIL image, upscaled with nearest neighbour (tiny images)."""
    array = np.asarray(image, dtype=np.float32)
    if array.ndim == 3:
        array = array[0] if array.shape[0] == 1 else np.transpose(array, (1, 2, 0))
    pil = Image.fromarray((np.clip(array, 0, 1) * 255).round().astype(np.uint8))
    scale = display_scale(max(pil.size)) if scale is None else scale
    return pil.resize((pil.width * scale, pil.height * scale), Image.NEAREST) if scale > 1 else pil


def contact_sheet(images: np.ndarray, columns: int | None = None, labels: Sequence[str] | None = None,
                  scale: int | None = None, pad: int = 6) -> Image.Image:
    """All images in a grid (upscaled), each with an optional label underneath."""
    tiles = [to_pil(image, scale).convert("RGB") for image in images]
    if not tiles:
        raise ValueError("no images for a contact sheet")
    columns = columns or math.ceil(math.sqrt(len(tiles)))
    rows = math.ceil(len(tiles) / columns)
    tw, th = tiles[0].size
    font = ImageFont.load_default(size=14)
    label_h = 18 if labels else 0
    sheet = Image.new("RGB", (columns * (tw + pad) + pad, rows * (th + pad + label_h) + pad), "white")
    draw = ImageDraw.Draw(sheet)
    for i, tile in enumerate(tiles):
        x = pad + (i % columns) * (tw + pad)
        y = pad + (i // columns) * (th + pad + label_h)
        sheet.paste(tile, (x, y))
        if labels:
            draw.text((x, y + th + 1), str(labels[i]), fill="black", font=font)
    return sheet
