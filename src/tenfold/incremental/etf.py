"""The simplex equiangular tight frame (ETF) used as a fixed classifier (NC-FSCIL, Sec. 3.1).

``W = sqrt(K/(K-1)) * U (I_K - 11^T/K)`` with ``U^T U = I``. Its columns have unit norm, pairwise
cosine ``-1/(K-1)``, sum to zero, and ``W^T W = K/(K-1) I - 11^T/(K-1)`` (rank ``K - 1``).
"""

from __future__ import annotations

import math

import torch

from tenfold.errors import require


def etf(num_classes: int, dim: int, seed: int = 0, dtype: torch.dtype = torch.float32,
        device: torch.device | str | None = None) -> torch.Tensor:
    """A seeded random simplex ETF of ``num_classes`` unit columns in ``R^dim``: a ``(dim, K)`` tensor.

    For ``dim >= K`` the orthonormal ``U`` (d x K) comes from the QR of a seeded Gaussian matrix. For
    ``dim = K - 1`` there is no such ``U``; then ``W = sqrt(K/(K-1)) Q B^T`` where ``B`` (K x K-1) is an
    orthonormal basis of the complement of the all-ones vector (``B B^T = I - 11^T/K``) and ``Q`` a random
    rotation, which has the same Gram matrix.
    """
    require(isinstance(num_classes, int) and num_classes >= 2, "num_classes", num_classes, "an integer >= 2")
    require(isinstance(dim, int) and dim >= num_classes - 1, "dim", dim,
            f"an integer >= num_classes - 1 = {num_classes - 1} (a simplex ETF of K points needs K - 1 dimensions)")
    k = num_classes
    g = torch.Generator().manual_seed(int(seed))
    scale = math.sqrt(k / (k - 1))
    if dim >= k:
        u, _ = torch.linalg.qr(torch.randn(dim, k, generator=g, dtype=torch.float64))
        centre = torch.eye(k, dtype=torch.float64) - 1.0 / k
        w = scale * u @ centre
    else:
        # Orthonormal basis of 1^perp: the last K-1 left singular vectors of the all-ones column.
        basis, _, _ = torch.linalg.svd(torch.ones(k, 1, dtype=torch.float64), full_matrices=True)
        b = basis[:, 1:]
        q, _ = torch.linalg.qr(torch.randn(dim, dim, generator=g, dtype=torch.float64))
        w = scale * q @ b.T
    return w.to(dtype=dtype, device=device)


def etf_gram(num_classes: int, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """The Gram matrix every simplex ETF has: ``K/(K-1) I - 11^T/(K-1)``."""
    k = num_classes
    return (k / (k - 1)) * torch.eye(k, dtype=dtype) - torch.ones(k, k, dtype=dtype) / (k - 1)
