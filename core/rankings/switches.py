"""Paper A's Dirichlet importance switches (Eq. 3-8), one layer at a time.

A probability vector s (one entry per unit) scales the layer's units. Prior Dir(alpha0 * 1),
variational posterior Dir(phi) with phi = softplus(p). We maximize the ELBO per training image,

    mean log p(y|x, E[s]) - KL(Dir(phi) || Dir(alpha0)) / n_train,

plugging in the posterior mean E[s] = phi / sum(phi) as the paper does. As in paper A, the
switches are trained **on the training split** (``split="train"``, the default), and the KL term
is divided by the size of that split, so the prior weighs what one pass over the training data
weighs in the paper's ELBO (sum of log-likelihoods - KL). Training on the validation split with
KL / n_val (n_val = 359-2,000) gave the prior 30-170x the paper's weight and flattened the scores.
``split="val"`` is kept for comparison. The unit of training is the epoch (one shuffled pass over
the split in batches of ``batch_size``); paper A trains 300 epochs. Every accuracy reported
(``switched_accuracy``) is measured on the validation split the ranking was asked for.

Unlike the authors' code, the network is really frozen: the switch trains through
Engine.gated_logits, which runs a private eval-mode copy of the network with requires_grad off
(no dropout, BN statistics untouched), and the optimizer holds only p. Score of unit j = E[s_j].

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

DEFAULTS = {"alpha0": None, "epochs": 300, "lr": 0.05, "batch_size": 256, "split": "train", "seed": 0}
PAPER_ALPHA0 = {"lenet5": 2.0, "vgg16": 0.05}  # the authors' priors
SPLITS = ("train", "val")


def normalize(params: dict, engine: Engine | None = None) -> dict:
    out = dict(params)
    if out["alpha0"] is None:
        arch = getattr(getattr(engine.model, "meta", None), "arch", "") if engine is not None else ""
        out["alpha0"] = PAPER_ALPHA0.get(arch, 2.0)
    out["alpha0"], out["lr"] = float(out["alpha0"]), float(out["lr"])
    out["epochs"], out["batch_size"] = int(out["epochs"]), int(out["batch_size"])
    if out["alpha0"] <= 0:
        raise ValueError(f"alpha0 must be positive, got {out['alpha0']}")
    if out["epochs"] < 1 or out["batch_size"] < 1 or out["lr"] <= 0:
        raise ValueError("switches need epochs >= 1, batch_size >= 1 and lr > 0")
    if out["split"] not in SPLITS:
        raise ValueError(f"switches train on split 'train' (paper A) or 'val', not {out['split']!r}")
    return out


def uses_training_split(params: dict) -> bool:
    return params["split"] == "train"


LABELLED = ("alpha0", "split")  # rank() adds the others to the label when not their defaults

def label(params: dict) -> str:
    where = "" if params.get("split", "train") == "train" else ", trained on val"
    return f"Switches (alpha0={params['alpha0']:g}{where})"


def compute(engine: Engine, layer: str, progress=None, alpha0: float = 2.0, epochs: int = 300, lr: float = 0.05,
            batch_size: int = 256, split: str = "train", seed: int = 0, train_engine: Engine | None = None):
    """``engine``: the validation split (accuracy); ``train_engine``: the split the switches learn on."""
    fit = train_engine if split == "train" else engine
    if fit is None:
        raise ValueError("switches on the training split need the training data (rank(..., train=...))")
    units, n = fit.units(layer), len(fit.data)
    generator = torch.Generator().manual_seed(int(seed))
    p = torch.full((units,), -1.0, device=fit.device, requires_grad=True)  # softplus(-1): uniform start
    prior = Dirichlet(torch.full((units,), alpha0, device=fit.device))
    optimizer = torch.optim.Adam([p], lr=lr)
    labels = fit.data.labels.to(fit.device)
    likelihood, kl_curve = np.zeros(epochs), np.zeros(epochs)
    # gated_logits runs a frozen, eval-mode copy of the network from the no-grad prefix cache:
    # the gradient reaches p only, and the shared model is never touched.
    for epoch in range(epochs):
        order = torch.randperm(n, generator=generator).to(fit.device)
        batches = 0
        for lo in range(0, n, batch_size):
            index = order[lo:lo + batch_size]
            phi = F.softplus(p)
            logits = fit.gated_logits(layer, phi / phi.sum(), index)
            log_lik = -F.cross_entropy(logits, labels[index])
            kl = kl_divergence(Dirichlet(phi), prior)
            loss = -log_lik + kl / n  # the ELBO of the whole split, divided by n
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            likelihood[epoch] += float(log_lik.detach())
            kl_curve[epoch] += float(kl.detach())
            batches += 1
        likelihood[epoch] /= batches
        kl_curve[epoch] /= batches
        if progress and (epoch % 5 == 4 or epoch == epochs - 1):
            progress(epoch + 1, epochs)
    with torch.no_grad():
        phi = F.softplus(p)
        mean = (phi / phi.sum()).cpu().numpy().astype(np.float64)
        gate = (phi / phi.sum()).to(engine.device)
        val_labels = engine.data.labels.to(engine.device)
        accuracy = float((engine.gated_logits(layer, gate).argmax(1) == val_labels).float().mean())
    return mean, None, {"likelihood": likelihood, "kl": kl_curve, "phi": phi.cpu().numpy().astype(np.float64),
                        "switched_accuracy": accuracy, "train_images": n, "trained_on": fit.data.key}
