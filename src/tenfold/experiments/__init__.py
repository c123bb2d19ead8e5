"""Experiments: one module per paper, each registering named runs in :data:`REGISTRY`."""

from tenfold.experiments.registry import IMPORT_ERRORS, REGISTRY, Experiment, discover, get, register

__all__ = ["REGISTRY", "IMPORT_ERRORS", "Experiment", "discover", "get", "register"]
