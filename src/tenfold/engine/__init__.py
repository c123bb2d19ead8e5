"""The engine: devices, processes, the training loop, checkpoints, seeds, progress and metrics.

It is the only layer that knows about devices and processes; method code uses its tensors' device.
Every training loop is a resumable :class:`Stage` (``fit`` is one), so ``--resume`` continues any run
bit-identically after a kill.
"""

from tenfold.engine.checkpoint import load_state, save_state
from tenfold.io import atomic_write_bytes, atomic_write_json, atomic_write_text
from tenfold.engine.context import RunContext
from tenfold.engine.loop import evaluate, fit
from tenfold.engine.seed import make_generator, seed_everything
from tenfold.engine.stage import Stage
from tenfold.engine.threads import fixed_threads

__all__ = [
    "RunContext", "Stage", "fixed_threads", "fit", "evaluate", "seed_everything", "make_generator",
    "atomic_write_bytes", "atomic_write_text", "atomic_write_json", "save_state", "load_state",
]
