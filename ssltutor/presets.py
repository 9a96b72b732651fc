"""Named run sizes in one place.

* ``smoke``: seconds, for tests and CI (tiny convnet, a few hundred images, one or two epochs);
* ``cpu``: minutes on a 2-core laptop (small convnet, 32 px, the real subsets or the embedded digits);
* ``paper``: the paper's setting where it is known (ResNet, full resolution, hundreds of epochs): for a GPU.

``preset(name, **overrides)`` returns a plain dict; paper notebooks take the shared keys and add their own from
``PAPER_PRESETS[paper][name]`` (each value with its source in a comment).
"""
from __future__ import annotations

import copy

PRESETS: dict[str, dict] = {
    "smoke": dict(backbone="small_convnet", width=8, head_scale=1 / 32, image_size=32, epochs=1, batch_size=64,
                  max_train=256, max_test=256, precision="fp32", channels_last=False, optimizer="sgd", lr=0.05,
                  weight_decay=5e-4, warmup_epochs=0, probe_epochs=20, knn_k=20),
    "cpu": dict(backbone="small_convnet", width=32, head_scale=1 / 8, image_size=32, epochs=15, batch_size=128,
                max_train=None, max_test=None, precision="bf16", channels_last=True, optimizer="sgd", lr=0.05,
                weight_decay=5e-4, warmup_epochs=1, probe_epochs=100, knn_k=50),
    "paper": dict(backbone="resnet18", width=None, head_scale=1.0, image_size=32, epochs=500, batch_size=256,
                  max_train=None, max_test=None, precision="bf16", channels_last=True, optimizer="lars", lr=0.4,
                  weight_decay=1e-5, warmup_epochs=10, probe_epochs=100, knn_k=200),
}

# Paper-specific additions, filled in by each paper's method module (see ssltutor/methods/*.py).
PAPER_PRESETS: dict[str, dict[str, dict]] = {}


def preset(name: str, paper: str | None = None, **overrides) -> dict:
    """The settings of preset ``name`` (optionally merged with ``paper``'s additions), with ``overrides`` applied."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}: choose one of {', '.join(PRESETS)}")
    out = copy.deepcopy(PRESETS[name])
    if paper is not None:
        if paper not in PAPER_PRESETS:
            raise ValueError(f"no presets for paper {paper!r}: known papers are {', '.join(sorted(PAPER_PRESETS)) or 'none'}")
        out.update(copy.deepcopy(PAPER_PRESETS[paper].get(name, {})))
    unknown = set(overrides) - set(out)
    if unknown:
        raise ValueError(f"unknown preset key(s) {sorted(unknown)}: known keys are {', '.join(sorted(out))}")
    out.update(overrides)
    return out
