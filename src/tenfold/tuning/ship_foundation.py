"""Pre-train the built-in foundation specs and write the weights that ship in the package.

``OMP_NUM_THREADS=1 python -m tenfold.tuning.ship_foundation shapes`` writes
``tenfold/tuning/weights/foundation-shapes.safetensors`` and prints its SHA-256, which
``tenfold.tuning.foundation.SHIPPED`` and docs/tuning.md must then hold.
"""

from __future__ import annotations

import os
import sys

import torch

from tenfold.tuning.foundation import SPECS, write_shipped

if __name__ == "__main__":
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))
    write_shipped(sys.argv[1:] or sorted(SPECS))
