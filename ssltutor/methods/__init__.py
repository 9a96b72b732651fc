"""Methods by name: ``create("simclr", backbone=..., **options)``."""
from __future__ import annotations

from ..data import augment
from ..models import Backbone, create_backbone
from .base import (Batch, Method, Wrapper, allowed_options, check_options, cosine_momentum, ema_update,
                   frozen_copy)
from .ssl import SSL_CLASSES, BYOL, VICReg, BarlowTwins, MoCoV2Plus, SimCLR, SimSiam, SSLMethod, SwAV
from .supervised import Supervised

METHODS: dict[str, type[Method]] = {"supervised": Supervised, **SSL_CLASSES}
SSL_METHODS = tuple(m for m in METHODS if m != "supervised")

# Paper 002 (EffSSL): "<base>_rot" for simclr/byol/mocov2plus/simsiam/barlow_twins/vicreg/swav, and "rotnet".
from .rotation import RotationAuxiliary, RotNet, rotation_class, rotation_methods, with_rotation  # noqa: E402
METHODS.update(rotation_methods(METHODS))
# Paper 001 (internal pretext task): channel-discard joint labels, and SLA's rotation joint labels.
from .internal import SLA, InternalPretext, JointLabelMethod  # noqa: E402
METHODS.update({"internal": InternalPretext, "sla": SLA})
# Paper 004 (DoGo): two models distilling each other's similarity distributions, and one model alone.
from .dogo import DoGo, DoGoBaseline  # noqa: E402
METHODS.update({"dogo": DoGo, "dogo_baseline": DoGoBaseline})
# Paper 003 (CaSSLe): any SSL method made continual by predictive distillation, create("cassle", ssl_method=...).
from .cassle import CaSSLe  # noqa: E402
METHODS.update({"cassle": CaSSLe})
# Paper 000 (FKT): joint CE + NT-Xent through one backbone (the baselines are "supervised" and "simclr").
from .fkt import FKT  # noqa: E402
METHODS.update({"fkt": FKT})


def create(name: str, backbone: Backbone | str | None = None, *, dataset: str | None = None, **options) -> Method:
    """Build a method by name. ``backbone``: a Backbone, a backbone name, or None for the small convnet.
    ``dataset`` (optional) picks the normalisation statistics. Unknown names or options raise a ValueError that
    lists what is allowed."""
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}: choose one of {', '.join(sorted(METHODS))}")
    cls = METHODS[name]
    check_options(name, cls, options)
    if backbone is None or isinstance(backbone, str):
        backbone = create_backbone(backbone or "small_convnet")
    if dataset is not None and "stats" in allowed_options(cls) and "stats" not in options:
        options["stats"] = augment.STATS.get(dataset, augment.IMAGENET_STATS)
    return cls(backbone, **options)


__all__ = ["Batch", "Method", "Wrapper", "METHODS", "SSL_METHODS", "create", "allowed_options", "frozen_copy",
           "ema_update", "cosine_momentum", "SSLMethod", "Supervised", "SimCLR", "BYOL", "MoCoV2Plus", "SimSiam",
           "BarlowTwins", "VICReg", "SwAV", "RotationAuxiliary", "RotNet", "rotation_class", "with_rotation"]
