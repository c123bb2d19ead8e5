"""The spellings of the SNN training rules (torch-free, so configs validate them without importing torch)."""

from __future__ import annotations

from tenfold.errors import ConfigError


def parse_rule(name: str) -> tuple[str, int | None]:
    """``"bptt"`` -> ("bptt", None), ``"sltt"`` -> ("sltt", None), ``"sltt-2"`` -> ("sltt-k", 2)."""
    if name in ("bptt", "sltt"):
        return name, None
    head, _, tail = name.rpartition("-")
    if head == "sltt" and tail.isdigit():
        return "sltt-k", int(tail)
    raise ConfigError(f"rule={name!r} is invalid: expected bptt, sltt or sltt-K with an integer K (e.g. sltt-2)")
