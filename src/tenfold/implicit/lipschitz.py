"""Weight normalisations that make a layer 1-Lipschitz, so that gamma * layer is a gamma-contraction.

Unlike power-iteration spectral norm (an estimate from below, updated in place), these use exact
singular values and a proven bound, so contraction holds at every step of training:

- linear: ||W x|| <= ||W||_2 ||x||, so W / max(1, ||W||_2) has operator norm <= 1;
- convolution (stride 1, zero padding): y = W_mat im2col(x) and each input pixel appears in at most
  kh*kw patches, so ||conv_W|| <= sqrt(kh kw) ||W_mat||_2 with W_mat the (out, in*kh*kw) reshaping.

- convolution on a known image size (tight): the zero-padded stride-1 convolution of an n x m image is
  a restriction of the full linear convolution, which equals the circular convolution on the
  (n + kh - 1) x (m + kw - 1) grid applied to the zero-embedded image; the circular convolution's singular
  values are those of the per-frequency matrices K_hat(w) (out x in) of the kernel's 2-D DFT (Sedghi,
  Gupta & Long 2019). So ||conv|| <= max_w ||K_hat(w)||_2, an upper bound within a few % of the true norm
  (the sqrt(kh kw) bound above is up to 3x loose for 3x3 kernels, which made gamma * K2 * K1 contract far
  more strongly than the configured gamma).

``scale_conv`` / ``scale_linear`` divide by the bound itself (not by max(1, bound)), so the layer's
Lipschitz bound is exactly 1 and gamma * layer is a contraction with bound exactly gamma.
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


def conv_operator_bound(weight: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Upper bound on the l2 operator norm of the zero-padded stride-1 convolution with ``weight`` on
    ``size`` images: max over the DFT frequencies of the (n+kh-1) x (m+kw-1) grid of ||K_hat(w)||_2
    (differentiable)."""
    kh, kw = weight.shape[-2:]
    spectrum = torch.fft.fft2(weight, s=(size[0] + kh - 1, size[1] + kw - 1))  # (out, in, H, W)
    return torch.linalg.matrix_norm(spectrum.permute(2, 3, 0, 1), ord=2).max()


def scale_conv(weight: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Kernel divided by :func:`conv_operator_bound`: Lipschitz bound exactly 1 on ``size`` images."""
    return weight / conv_operator_bound(weight, size).clamp_min(torch.finfo(weight.dtype).tiny)


def scale_linear(weight: torch.Tensor) -> torch.Tensor:
    """W / ||W||_2: operator norm exactly 1."""
    return weight / spectral_norm_exact(weight).clamp_min(torch.finfo(weight.dtype).tiny)
