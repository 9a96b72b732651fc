"""Heads: one declarative MLP builder for projectors, predictors, rotation heads and classifiers.

``mlp([512, 2048, 128])`` is Linear(512, 2048) -> BN -> ReLU -> Linear(2048, 128). Per-method defaults (the papers)
live in :data:`HEADS` and are scaled to the backbone width by :func:`head`.
"""
from __future__ import annotations

from torch import nn

ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU, "identity": nn.Identity}


def mlp(dims: list[int], *, batch_norm: bool = True, last_batch_norm: bool = False, last_bn_affine: bool = True,
        activation: str = "relu", bias: bool = True, hidden_bias: bool | None = None) -> nn.Sequential:
    """Linear layers through ``dims`` with BN (optional) and activation between them.

    dims: [in, hidden..., out]; ``last_batch_norm`` adds BN after the last linear (SimSiam's projector, SwAV);
    ``hidden_bias`` defaults to ``not batch_norm`` (a bias before BN is redundant).
    """
    if len(dims) < 2 or any(int(d) < 1 for d in dims):
        raise ValueError(f"dims must list at least two positive sizes [in, ..., out], got {dims}")
    if activation not in ACTIVATIONS:
        raise ValueError(f"unknown activation {activation!r}: choose one of {', '.join(ACTIVATIONS)}")
    hidden_bias = (not batch_norm) if hidden_bias is None else hidden_bias
    layers: list[nn.Module] = []
    for i, (cin, cout) in enumerate(zip(dims[:-1], dims[1:])):
        last = i == len(dims) - 2
        layers.append(nn.Linear(cin, cout, bias=bias if last else hidden_bias))
        if not last:
            if batch_norm:
                layers.append(nn.BatchNorm1d(cout))
            layers.append(ACTIVATIONS[activation]())
        elif last_batch_norm:
            layers.append(nn.BatchNorm1d(cout, affine=last_bn_affine))
    return nn.Sequential(*layers)


# Per-method head shapes from the papers' code: (hidden, out, options). ``hidden=None`` means "as wide as the input".
HEADS = {
    "simclr_projector": dict(hidden=2048, out=128, batch_norm=False),        # SimCLR (solo-learn/CaSSLe: 2048 -> 256)
    "byol_projector": dict(hidden=4096, out=256, batch_norm=True),           # BYOL (Grill et al. 2020)
    "byol_predictor": dict(hidden=4096, out=256, batch_norm=True),
    "mocov2plus_projector": dict(hidden=2048, out=128, batch_norm=False),    # MoCo v2+ (solo-learn)
    # SimSiam's code: the last BN has no affine parameters (Chen & He 2021, main_simsiam / builder.py)
    "simsiam_projector": dict(hidden=2048, out=2048, layers=3, batch_norm=True, last_batch_norm=True,
                              last_bn_affine=False),
    "simsiam_predictor": dict(hidden=512, out=2048, batch_norm=True),        # bottleneck predictor (Chen & He 2021)
    "barlow_projector": dict(hidden=2048, out=2048, layers=3, batch_norm=True),
    "vicreg_projector": dict(hidden=2048, out=2048, layers=3, batch_norm=True),
    "swav_projector": dict(hidden=2048, out=128, batch_norm=True),
    "rotation_head": dict(hidden=2048, out=4, batch_norm=True),              # EffSSL: Linear-BN-ReLU-Linear to 4
    "cassle_predictor": dict(hidden=2048, out=None, batch_norm=True),        # CaSSLe: D -> 2048 -> D
}


def head(kind: str, in_dim: int, scale: float = 1.0, out: int | None = None, hidden: int | None = None) -> nn.Sequential:
    """A named head from :data:`HEADS`; ``scale`` shrinks the hidden and output widths for small CPU backbones
    (``scale=0.125`` turns BYOL's 4096/256 into 512/32). ``out``/``hidden`` override the (scaled) defaults."""
    if kind not in HEADS:
        raise ValueError(f"unknown head {kind!r}: choose one of {', '.join(HEADS)}")
    if scale <= 0:
        raise ValueError(f"scale must be > 0, got {scale}")
    spec = dict(HEADS[kind])
    width = hidden or max(8, int(spec.pop("hidden") * scale))
    spec.pop("hidden", None)
    default_out = spec.pop("out")
    if out is None:
        out = in_dim if default_out is None else (default_out if default_out <= 4 else max(8, int(default_out * scale)))
    layers = spec.pop("layers", 2)
    dims = [in_dim] + [width] * (layers - 1) + [out]
    return mlp(dims, **spec)
