"""The papers' experiments, one module per paper: ``from ssltutor.studies import fkt``."""
