"""Visual tuning toolkit (survey "Visual Tuning", arXiv:2305.06061): prompt, adapter, parameter and
remapping tuning of timm ViTs through one entry point.

    import tenfold.tuning as tt
    model = tt.apply(vit, "lora-qv", rank=8)
    tt.count_parameters(model)["trainable"]

Methods register themselves in :mod:`tenfold.tuning.registry`; ``tt.METHODS`` lists them.
"""

from tenfold.tuning.registry import (
    FAMILIES,
    METHODS,
    TuningMethod,
    apply,
    count_parameters,
    get_method,
    method_names,
    register_method,
)
from tenfold.tuning import baselines  # noqa: F401,E402  (registers linear, full)

import importlib.util as _util  # noqa: E402

if _util.find_spec("tenfold.tuning.lion") is not None:  # LION (issue 7) registers itself once its file exists
    from tenfold.tuning import lion  # noqa: F401,E402

__all__ = ["FAMILIES", "METHODS", "TuningMethod", "apply", "count_parameters", "get_method", "method_names",
           "register_method"]
