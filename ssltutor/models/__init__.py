"""Backbones and heads."""
from .backbones import BACKBONES, CONVNETS, Backbone, create_backbone, fast_convnet, res_convnet, small_convnet
from .features import extract_features
from .heads import HEADS, head, mlp

__all__ = ["BACKBONES", "CONVNETS", "Backbone", "create_backbone", "small_convnet", "fast_convnet", "res_convnet", "HEADS", "head", "mlp",
           "extract_features"]
