"""Weight normalisations that make a layer 1-Lipschitz, so that gamma * layer is a gamma-contraction.

Unlike power-iteration spectral norm (an estimate from below, updated in place), these use exact
singular values and a proven bound, so contraction holds at every step of training:

- linear: ||W x|| <= ||W||_2 ||x||, so W / max(1, ||W||_2) has operator norm <= 1;
- convolution (stride 1, zero padding): y = W_mat im2col(x) and each input pixel appears in at most
  kh*kw patches, so ||conv_W|| <= sqrt(kh kw) ||W_mat||_2 with W_mat the (out, in*kh*kw) reshaping.

Compute the normalised weight once per forward and reuse it in every solver iteration.
"""

from __future__ import annotations

import math

import torch


def spectral_norm_exact(weight: torch.Tensor) -> torch.Tensor:
    """Largest singular value of ``weight`` reshaped to (out, -1) (differentiable)."""
    return torch.linalg.matrix_norm(weight.reshape(weight.shape[0], -1), ord=2)


def conv_lipschitz_bound(weight: torch.Tensor) -> torch.Tensor:
    """Upper bound sqrt(kh kw) ||W_mat||_2 on the l2 operator norm of a stride-1 convolution."""
    kh, kw = weight.shape[-2:]
    return math.sqrt(kh * kw) * spectral_norm_exact(weight)


def normalize_linear(weight: torch.Tensor) -> torch.Tensor:
    """W / max(1, ||W||_2): operator norm at most 1, unchanged when already below 1."""
    return weight / torch.clamp(spectral_norm_exact(weight), min=1.0)


def normalize_conv(weight: torch.Tensor) -> torch.Tensor:
    """Conv kernel scaled so that its proven Lipschitz bound is at most 1."""
    return weight / torch.clamp(conv_lipschitz_bound(weight), min=1.0)
