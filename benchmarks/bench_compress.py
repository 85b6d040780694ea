"""Benchmark of compression's pay-off, each comparison measured side by side in one run.

    .venv/bin/python benchmarks/bench_compress.py [--reps 7] [--threads 1]

1. Fine-tuning throughput (training images per second, optimizer steps only): the original vs the
   pruned network, with the same recipe, data and batch size. LeNet-5 10-20-100-25 -> 5-7-45-20 on
   1,024 MNIST-shaped images; VGG-16 x0.25 -> every layer halved on 256 CIFAR-shaped images.
2. Inference latency of the exported ONNX model in onnxruntime vs the same PyTorch model (eval,
   no_grad), on one batch of 64 images and on a single image; the ONNX export is first checked to give
   the same logits (1e-4).

Repetitions of the two sides alternate (a, b, a, b, ...) and medians are reported, so load hits both.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import core  # noqa: E402
from core.data import DataSplit  # noqa: E402
from core.pruning.export import onnx_bytes, onnx_session, verify_onnx  # noqa: E402


def side_by_side(a, b, reps: int) -> tuple[list[float], list[float]]:
    ra, rb = [], []
    for _ in range(reps):
        ra.append(a())
        rb.append(b())
    return ra, rb


def timed(fn, inner: int = 1) -> float:
    start = time.perf_counter()
    for _ in range(inner):
        fn()
    return (time.perf_counter() - start) / inner


def random_split(shape, n: int, seed: int = 0) -> DataSplit:
    g = torch.Generator().manual_seed(seed)
    return DataSplit("random", "train", torch.rand(n, *shape, generator=g), torch.randint(0, 10, (n,), generator=g),
                     [str(i) for i in range(10)])


def models() -> list[tuple[str, torch.nn.Module, torch.nn.Module, DataSplit]]:
    lenet = core.load_model(device="cpu")
    lenet_small = core.prune(lenet, core.plan_from_widths(lenet, "5-7-45-20", core.layer_rankings(
        lenet, core.load_dataset("digits", "val"), "l1")))
    torch.manual_seed(0)
    vgg = core.vgg16(0.25).eval()
    vgg.meta = core.ModelMeta("vgg16", {"width_mult": 0.25}, (3, 32, 32), [str(i) for i in range(10)],
                              [0.5] * 3, [0.25] * 3)
    names = core.network.models.layer_names(vgg)
    rankings = {layer: np.arange(core.network.models.unit_count(vgg, layer), dtype=float) for layer in names}
    half = [max(1, core.network.models.unit_count(vgg, layer) // 2) for layer in names]
    vgg_small = core.prune(vgg, core.plan_from_widths(vgg, half, rankings))
    return [("LeNet-5 10-20-100-25 -> 5-7-45-20", lenet, lenet_small, random_split((1, 28, 28), 1024)),
            ("VGG-16 x0.25 -> every layer halved", vgg, vgg_small, random_split((3, 32, 32), 256))]


def throughput(model, data: DataSplit) -> float:
    result = core.finetune(model, data, data.subset(64), "paper-b", epochs=1, eval_every=10**9, batch_size=64)
    return result.images_per_second


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} thread(s), medians of {args.reps} alternating repetitions\n")
    rows = []
    for name, big, small, data in models():
        totals_big, totals_small = core.model_totals(big), core.model_totals(small)
        throughput(big, data), throughput(small, data)  # warm-up
        a, b = side_by_side(lambda: throughput(big, data), lambda: throughput(small, data), args.reps)
        ma, mb = statistics.median(a), statistics.median(b)
        rows.append(f"| {name}: fine-tuning, images/s | {ma:,.0f} original | {mb:,.0f} pruned | **{mb / ma:.2f}x** | "
                    f"FLOPs {totals_big['flops'] / totals_small['flops']:.1f}x fewer |")
        for batch in (64, 1):
            images = data.images[:batch]
            session = onnx_session(onnx_bytes(small), threads=args.threads)
            diff = verify_onnx(small, onnx_bytes(small), images)
            feed = {"images": images.numpy()}
            torch_model = small.eval()

            def run_torch():
                with torch.no_grad():
                    torch_model(images)
            inner = 20 if batch == 1 else 3
            timed(run_torch, inner), timed(lambda: session.run(None, feed), inner)
            t, o = side_by_side(lambda: timed(run_torch, inner), lambda: timed(lambda: session.run(None, feed), inner),
                                args.reps)
            mt, mo = statistics.median(t), statistics.median(o)
            rows.append(f"| {name}: pruned model inference, batch {batch} | {mt * 1e3:.2f} ms PyTorch | "
                        f"{mo * 1e3:.2f} ms ONNX Runtime | **{mt / mo:.2f}x** | max logit diff {diff:.1e} |")
    print("| case | a | b | b vs a | note |\n|---|---|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
