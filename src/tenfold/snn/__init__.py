"""Spiking neural networks: LIF neurons, surrogate gradients, the SLTT / SLTT-K training rules and SPIDE.

- SLTT (Meng et al., ICCV 2023): :class:`SNNTrainer` (a trainer) and :func:`sltt_step` (one batch in your
  own loop), on a one-step model built from :class:`LIFNeuron` (or SpikingJelly neurons).
- SPIDE (Xiao et al., Neural Networks 2023): :class:`SpideNetwork` (a feedback spiking network whose
  backward is the spike-computed implicit gradient), :class:`SpideClassifier` and the paper's networks.

Shared: :func:`spike`, :data:`SURROGATES`, :class:`LIFNeuron`, :func:`reset_states`.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

# Each name's module, imported on first use (PEP 562): ``tenfold.snn.rules`` is torch-free, so a config that
# validates rule names imports it without loading torch through this package.
_EXPORTS = {
    "LIFNeuron": "neurons", "leak": "neurons", "reset_states": "neurons", "run_steps": "neurons",
    "set_temporal": "neurons",
    "SpideNetwork": "spide", "SpideState": "spide",
    "SpideClassifier": "spide_models", "alexnet_f": "spide_models", "cifarnet_f": "spide_models",
    "feature_count": "spide_models", "lenet5": "spide_models", "mlp_f": "spide_models",
    "SURROGATES": "surrogate", "spike": "surrogate", "surrogate_grad": "surrogate",
    "BatchResult": "train", "SNNTrainer": "train", "sltt_step": "train",
}
__all__ = ["BatchResult", "LIFNeuron", "SNNTrainer", "SURROGATES", "SpideClassifier", "SpideNetwork", "SpideState",
           "alexnet_f", "cifarnet_f", "feature_count", "leak", "lenet5", "mlp_f", "reset_states", "run_steps",
           "set_temporal", "sltt_step", "spike", "surrogate_grad"]

if TYPE_CHECKING:
    from tenfold.snn.neurons import LIFNeuron, leak, reset_states, run_steps, set_temporal  # noqa: F401
    from tenfold.snn.spide import SpideNetwork, SpideState  # noqa: F401
    from tenfold.snn.spide_models import (SpideClassifier, alexnet_f, cifarnet_f, feature_count,  # noqa: F401
                                          lenet5, mlp_f)
    from tenfold.snn.surrogate import SURROGATES, spike, surrogate_grad  # noqa: F401
    from tenfold.snn.train import BatchResult, SNNTrainer, sltt_step  # noqa: F401


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"tenfold.snn.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'tenfold.snn' has no attribute {name!r}")


assert sorted(__all__) == sorted(_EXPORTS)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
