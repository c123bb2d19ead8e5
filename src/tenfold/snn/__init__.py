"""Spiking neural networks: LIF neurons, surrogate gradients, the SLTT / SLTT-K training rules and SPIDE.

- SLTT (Meng et al., ICCV 2023): :class:`SNNTrainer` (a trainer) and :func:`sltt_step` (one batch in your
  own loop), on a one-step model built from :class:`LIFNeuron` (or SpikingJelly neurons).
- SPIDE (Xiao et al., Neural Networks 2023): :class:`SpideNetwork` (a feedback spiking network whose
  backward is the spike-computed implicit gradient), :class:`SpideClassifier` and the paper's networks.

Shared: :func:`spike`, :data:`SURROGATES`, :class:`LIFNeuron`, :func:`reset_states`.
"""

from tenfold.snn.neurons import LIFNeuron, leak, reset_states, run_steps, set_temporal
from tenfold.snn.spide import SpideNetwork, SpideState
from tenfold.snn.spide_models import SpideClassifier, alexnet_f, cifarnet_f, feature_count, lenet5, mlp_f
from tenfold.snn.surrogate import SURROGATES, spike, surrogate_grad
from tenfold.snn.train import BatchResult, SNNTrainer, sltt_step

__all__ = ["BatchResult", "LIFNeuron", "SNNTrainer", "SURROGATES", "SpideClassifier", "SpideNetwork", "SpideState",
           "alexnet_f", "cifarnet_f", "feature_count", "leak", "lenet5", "mlp_f", "reset_states", "run_steps",
           "set_temporal", "sltt_step", "spike", "surrogate_grad"]
