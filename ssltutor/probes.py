"""Linear-probe protocols on frozen features: all labels, a labelled fraction, noisy labels, plus weighted kNN.

DoGo's evaluation (Bhat et al. 2021, arXiv 2104.09866) trains a linear classifier on frozen, un-augmented features. It
holds out 15 % of the training labels to pick the best epoch and reports the test accuracy of that epoch
(:func:`ssltutor.evaluate.linear_probe` with ``val_fraction=0.15``). The paper also reports limited and noisy labels
(abstract; the released code has no script for them). Here they are:

* **limited labels** ``f``: the probe sees a class-balanced ``f`` share of the training labels
  (:func:`ssltutor.data.labelled_fraction`). The 15 % hold-out comes out of that share when every class keeps at
  least ``ceil(1 / val_fraction)`` labelled samples. Otherwise there is no hold-out and the last epoch counts: at 1 %
  a validation set of one image per class would choose the epoch by chance.
* **noisy labels** ``r``: symmetric noise moves ``round(r N)`` training labels to a different class
  (:func:`ssltutor.data.symmetric_label_noise`) before the hold-out, so model selection sees noisy labels too, as
  it would in practice. The test labels stay clean.

Metric keys: ``linear`` (all labels), ``linear_labels_10`` (10 % of labels), ``linear_noise_40`` (40 % noise),
``knn`` (all labels).
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import Tensor

from .data import labelled_fraction, symmetric_label_noise
from .evaluate import knn_accuracy, linear_probe

__all__ = ["probe_key", "probe_suite", "holdout_fraction"]


def _percent(value: float) -> str:
    return f"{100 * value:g}".replace(".", "p")


def probe_key(fraction: float = 1.0, noise: float = 0.0) -> str:
    """``"linear"``, ``"linear_labels_10"`` (fraction 0.1) or ``"linear_noise_40"`` (noise 0.4)."""
    if fraction < 1.0 and noise > 0.0:
        return f"linear_labels_{_percent(fraction)}_noise_{_percent(noise)}"
    if fraction < 1.0:
        return f"linear_labels_{_percent(fraction)}"
    if noise > 0.0:
        return f"linear_noise_{_percent(noise)}"
    return "linear"


def holdout_fraction(labels: Tensor, val_fraction: float) -> float:
    """``val_fraction`` when every class of ``labels`` has at least ``ceil(1 / val_fraction)`` samples, else 0."""
    if val_fraction <= 0:
        return 0.0
    counts = torch.bincount(labels.long().cpu())
    counts = counts[counts > 0]
    return val_fraction if int(counts.min()) >= math.ceil(1 / val_fraction) else 0.0


def probe_suite(train_features: Tensor, train_labels: Tensor, test_features: Tensor, test_labels: Tensor, *,
                num_classes: int | None = None, fractions: Sequence[float] = (1.0,),
                noise_rates: Sequence[float] = (), val_fraction: float = 0.15, epochs: int = 100,
                knn_k: int | None = 200, seed: int = 0, **probe_options) -> dict[str, float]:
    """Accuracies of linear probes at each labelled ``fraction`` and each ``noise_rate``, and kNN.

    Args:
        train_features: (N, D) frozen features. train_labels: (N,) int64 in [0, C).
        test_features: (M, D) features. test_labels: (M,) clean labels.
        num_classes: C (default: from the labels). fractions: labelled shares in (0, 1] (1.0 is the full probe).
        noise_rates: symmetric label-noise rates in (0, 1), applied to all training labels.
        val_fraction: hold-out for epoch selection (DoGo: 0.15). epochs: probe epochs (DoGo: 100).
        knn_k: neighbours of the weighted kNN on all labels; ``None`` skips kNN.
        seed: the probe's initialisation and the label subsets/noise draws.
        probe_options: passed to :func:`ssltutor.evaluate.linear_probe` (lr, optimizer, batch_size, ...).
    Returns:
        ``{metric: accuracy in [0, 1]}``, keys as :func:`probe_key` (and ``"knn"``).
    """
    labels = train_labels.long()
    num_classes = num_classes or int(torch.cat([labels, test_labels.long()]).max()) + 1
    runs: list[tuple[str, Tensor, Tensor]] = []
    for fraction in fractions:
        if not 0 < fraction <= 1:
            raise ValueError(f"fractions must be in (0, 1], got {fraction}")
        index = labelled_fraction(labels.cpu(), fraction, seed).to(labels.device) if fraction < 1 else None
        runs.append((probe_key(fraction), *(
            (train_features[index], labels[index]) if index is not None else (train_features, labels))))
    for rate in noise_rates:
        if not 0 < rate < 1:
            raise ValueError(f"noise_rates must be in (0, 1), got {rate}")
        noisy = symmetric_label_noise(labels.cpu(), rate, num_classes, seed).to(labels.device)
        runs.append((probe_key(noise=rate), train_features, noisy))
    results = {}
    for key, features, y in runs:
        result = linear_probe(features, y, test_features, test_labels, num_classes=num_classes, epochs=epochs,
                              val_fraction=holdout_fraction(y, val_fraction), seed=seed, **probe_options)
        results[key] = result.accuracy
    if knn_k is not None:
        results["knn"] = knn_accuracy(train_features, labels, test_features, test_labels, k=knn_k,
                                      num_classes=num_classes)
    return results
