"""digits-mlp's statements: one paper claim with an ablation that removes only its mechanism, one check."""

from __future__ import annotations

from tenfold.reporting import Check, PaperClaim

CLAIMS = [
    PaperClaim("a hidden nonlinearity lowers the linear model's test loss (cross-entropy ratio MLP / linear)",
               metric="loss_ratio", at_most="thresholds.max_loss_ratio",
               # the nonlinearity removed, everything else kept: the same parameter count, optimizer, lr grid
               # and data order (hidden=0 would be the linear baseline itself: ablation = baseline)
               ablation=["activation=identity"], arms=("mlp_test_loss", "linear_test_loss"),
               paper="MNIST, LeCun et al. (1998), Table 1: linear classifier 12.0% vs 2-layer net with 300 hidden "
                     "units 4.7% test error (ratio 0.39)"),
    Check("MLP test accuracy", metric="test_acc", at_least="thresholds.min_test_acc"),
]
