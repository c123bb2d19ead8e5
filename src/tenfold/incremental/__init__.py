"""Few-shot class-incremental learning with a fixed neural-collapse ETF classifier (NC-FSCIL,
Yang et al., ICLR 2023, arXiv:2302.03004): the ETF, the dot-regression loss, the projection head,
the session runner with its baselines, and the FSCIL metrics.

Labels are numbered in session order (base classes ``0..B-1``, then each session's); a dataset's own class
ids go through :func:`renumber_sessions` first (the runner refuses other labels with a one-line error)."""

from tenfold.incremental.etf import etf, etf_gram
from tenfold.incremental.losses import balance_weights, dot_regression_loss, mixed_loss, prototype_cosine
from tenfold.incremental.metrics import (SessionRecord, accuracy_matrix, average_accuracy, forgetting,
                                         performance_drop)
from tenfold.incremental.model import ETFClassifier, FSCILNet, ProjectionHead, conv_backbone, mlp_backbone, predict
from tenfold.incremental.sessions import (METHODS, BaseSettings, IncrementalSettings, SessionData, cache_features,
                                          check_session_labels, class_means, renumber_sessions, run_sessions,
                                          train_base)

__all__ = ["etf", "etf_gram", "balance_weights", "dot_regression_loss", "mixed_loss", "prototype_cosine",
           "SessionRecord", "accuracy_matrix", "average_accuracy", "forgetting", "performance_drop",
           "ETFClassifier", "FSCILNet", "ProjectionHead", "conv_backbone", "mlp_backbone", "predict",
           "METHODS", "BaseSettings", "IncrementalSettings", "SessionData", "cache_features", "class_means",
           "run_sessions", "train_base", "renumber_sessions", "check_session_labels"]
