"""ssltutor: five self-supervised learning papers, implemented in PyTorch and taught as notebooks."""

__version__ = "0.1.0"
