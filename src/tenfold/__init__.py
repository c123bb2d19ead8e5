from importlib.metadata import version as _v
try:
    __version__ = _v("tenfold")
except Exception:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0"
