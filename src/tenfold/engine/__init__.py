"""The engine: devices, processes, the training loop, checkpoints, seeds, progress and metrics.

It is the only layer that knows about devices and processes; method code uses its tensors' device.
"""

from tenfold.engine.checkpoint import atomic_write_bytes, atomic_write_json, atomic_write_text, load_state, save_state
from tenfold.engine.context import RunContext
from tenfold.engine.loop import evaluate, fit
from tenfold.engine.seed import make_generator, seed_everything

__all__ = [
    "RunContext", "fit", "evaluate", "seed_everything", "make_generator",
    "atomic_write_bytes", "atomic_write_text", "atomic_write_json", "save_state", "load_state",
]
