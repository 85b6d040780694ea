"""Paper A's Dirichlet importance switches (Eq. 3-8), one layer at a time.

A probability vector s (one entry per unit) scales the layer's units. Prior Dir(alpha0 * 1),
variational posterior Dir(phi) with phi = softplus(p). We maximize the ELBO per image,
mean log p(y|x, E[s]) - KL(Dir(phi) || Dir(alpha0)) / n, plugging in the posterior mean
E[s] = phi / sum(phi) as the paper does. Unlike the authors' code, the network is really
frozen: the switch trains through Engine.gated_logits, which runs a private eval-mode copy of
the network with requires_grad off (no dropout, BN statistics untouched), and the optimizer
holds only p. Score of unit j = E[s_j].

Where the switch sits: the paper multiplies the layer's pre-activation. We scale the block
output through Engine.gated_logits (only the suffix runs). For LeNet (conv -> maxpool -> ReLU)
that is identical, since a positive scale commutes with max-pooling and ReLU. For BN models
(conv -> BN -> ReLU) we scale after BN, i.e. the switch multiplies BN's output (the
pre-activation that enters the ReLU), so it never interacts with the frozen BN statistics and
acts where the engine turns units off.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch.distributions import Dirichlet, kl_divergence

from ..engine import Engine

DEFAULTS = {"alpha0": None, "steps": 300, "lr": 0.05, "batch_size": 256, "seed": 0}
PAPER_ALPHA0 = {"lenet5": 2.0, "vgg16": 0.05}  # the authors' priors


def normalize(params: dict, engine: Engine | None = None) -> dict:
    out = dict(params)
    if out["alpha0"] is None:
        arch = getattr(getattr(engine.model, "meta", None), "arch", "") if engine is not None else ""
        out["alpha0"] = PAPER_ALPHA0.get(arch, 2.0)
    out["alpha0"], out["lr"] = float(out["alpha0"]), float(out["lr"])
    out["steps"], out["batch_size"] = int(out["steps"]), int(out["batch_size"])
    if out["alpha0"] <= 0:
        raise ValueError(f"alpha0 must be positive, got {out['alpha0']}")
    if out["steps"] < 1 or out["batch_size"] < 1 or out["lr"] <= 0:
        raise ValueError("switches need steps >= 1, batch_size >= 1 and lr > 0")
    return out


def label(params: dict) -> str:
    return f"Switches (alpha0={params['alpha0']:g})"


def compute(engine: Engine, layer: str, progress=None, alpha0: float = 2.0, steps: int = 300, lr: float = 0.05,
            batch_size: int = 256, seed: int = 0):
    units, n = engine.units(layer), len(engine.data)
    generator = torch.Generator().manual_seed(int(seed))
    p = torch.full((units,), -1.0, device=engine.device, requires_grad=True)  # softplus(-1): uniform start
    prior = Dirichlet(torch.full((units,), alpha0, device=engine.device))
    optimizer = torch.optim.Adam([p], lr=lr)
    labels = engine.data.labels.to(engine.device)
    likelihood, kl_curve = np.zeros(steps), np.zeros(steps)
    # gated_logits runs a frozen, eval-mode copy of the network from the no-grad prefix cache:
    # the gradient reaches p only, and the shared model is never touched.
    for step in range(steps):
        index = torch.randperm(n, generator=generator)[:batch_size].to(engine.device) if batch_size < n \
            else slice(None)
        phi = F.softplus(p)
        logits = engine.gated_logits(layer, phi / phi.sum(), index)
        log_lik = -F.cross_entropy(logits, labels[index])
        kl = kl_divergence(Dirichlet(phi), prior)
        loss = -log_lik + kl / n
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        likelihood[step], kl_curve[step] = float(log_lik.detach()), float(kl.detach())
        if progress and (step % 10 == 9 or step == steps - 1):
            progress(step + 1, steps)
    with torch.no_grad():
        phi = F.softplus(p)
        mean = (phi / phi.sum()).cpu().numpy().astype(np.float64)
        accuracy = float((engine.gated_logits(layer, phi / phi.sum()).argmax(1) == labels).float().mean())
    return mean, None, {"likelihood": likelihood, "kl": kl_curve, "phi": phi.cpu().numpy().astype(np.float64),
                        "switched_accuracy": accuracy}
