"""Backbones and heads."""
from .backbones import BACKBONES, Backbone, create_backbone, small_convnet
from .heads import HEADS, head, mlp

__all__ = ["BACKBONES", "Backbone", "create_backbone", "small_convnet", "HEADS", "head", "mlp"]
