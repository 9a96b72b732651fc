"""The old home of the studies' data loading and ``metrics.json`` writer, kept for ``bench learn``: see
:mod:`ssltutor.studies.base`."""
from .studies.base import cap, environment, load_experiment_data, write_metrics

__all__ = ["cap", "load_experiment_data", "environment", "write_metrics"]
