"""Thread pinning: run a block with a fixed number of torch intra-op threads, restored afterwards.

Timings and figures that must not depend on the machine's core count (benchmarks, quick runs of
tiny models) run inside ``with fixed_threads(n):``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

from tenfold.errors import ConfigError


@contextlib.contextmanager
def fixed_threads(n: int = 1) -> Iterator[None]:
    """``torch.set_num_threads(n)`` inside the block; the previous count is restored on exit."""
    if int(n) < 1:
        raise ConfigError(f"threads={n!r} is invalid: expected a positive number of threads")
    old = torch.get_num_threads()
    torch.set_num_threads(int(n))
    try:
        yield
    finally:
        torch.set_num_threads(old)
