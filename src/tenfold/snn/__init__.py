"""Spiking neural networks: LIF neurons, surrogate gradients, and the SLTT / SLTT-K training rules.

Public API shared with SPIDE: :func:`spike`, :data:`SURROGATES`, :class:`LIFNeuron`, :func:`reset_states`.
"""

from tenfold.snn.neurons import LIFNeuron, leak, reset_states, run_steps, set_temporal
from tenfold.snn.surrogate import SURROGATES, spike, surrogate_grad

__all__ = ["LIFNeuron", "SURROGATES", "leak", "reset_states", "run_steps", "set_temporal", "spike",
           "surrogate_grad"]
