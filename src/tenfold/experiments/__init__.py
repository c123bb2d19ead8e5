"""Experiments: one module per paper, each registering named runs in :data:`REGISTRY`.

The names below are loaded on first use, so ``tenfold list`` (which reads :mod:`tenfold.experiments.index`)
does not import the config machinery.
"""

__all__ = ["REGISTRY", "IMPORT_ERRORS", "Experiment", "discover", "get", "register"]


def __getattr__(name: str):
    if name in __all__:
        from tenfold.experiments import registry

        return getattr(registry, name)
    raise AttributeError(f"module 'tenfold.experiments' has no attribute {name!r}")
