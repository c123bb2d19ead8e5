"""Neural initialization optimization (NIO) and the GradCosine statistic (Yang, Wang, Yuan, Lin,
NeurIPS 2022, arXiv:2210.05956), for any PyTorch model with Conv, Linear or LayerNorm layers (BatchNorm
scales are optimized too, as in the official RescaleAdam); GradInit (Zhu et al., NeurIPS 2021), its baseline.

One loss convention throughout (:data:`LOSS_FN_SIGNATURE`): ``loss_fn(outputs, targets)`` returns the mean
loss as a scalar tensor, as ``F.cross_entropy`` does (the default of :func:`nio`, :func:`gradinit` and
:func:`gradcosine`); a per-sample loss (``reduction="none"``) is refused with a one-line error."""

from tenfold.init.gradcosine import (LOSS_FN_SIGNATURE, GradCosine, cosine_statistics, gradcosine, statistic_mode,
                                     sub_batch_bounds, supported_parameters)
from tenfold.init.gradinit import GradInitHistory, gradinit, lookahead_loss
from tenfold.init.nio import (OBJECTIVES, NIOHistory, RescaleAdamState, nio, objective_value, scaled_parameters,
                              uniform_rescale)

__all__ = ["LOSS_FN_SIGNATURE", "GradCosine", "cosine_statistics", "gradcosine", "statistic_mode",
           "sub_batch_bounds", "supported_parameters", "OBJECTIVES", "NIOHistory", "RescaleAdamState", "nio",
           "objective_value", "scaled_parameters", "uniform_rescale", "GradInitHistory", "gradinit", "lookahead_loss"]
