"""Neural initialization optimization (NIO) and the GradCosine statistic (Yang, Wang, Yuan, Lin,
NeurIPS 2022, arXiv:2210.05956), for any PyTorch model built from Conv, Linear and LayerNorm layers."""

from tenfold.init.gradcosine import (GradCosine, cosine_statistics, gradcosine, per_sample_cross_entropy,
                                     statistic_mode, sub_batch_bounds, supported_parameters)
from tenfold.init.nio import NIOHistory, nio

__all__ = ["GradCosine", "cosine_statistics", "gradcosine", "per_sample_cross_entropy", "statistic_mode",
           "sub_batch_bounds", "supported_parameters", "NIOHistory", "nio"]
