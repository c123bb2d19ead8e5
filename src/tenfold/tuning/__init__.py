"""Visual tuning toolkit (survey "Visual Tuning", arXiv:2305.06061): prompt, adapter, parameter and
remapping tuning of timm ViTs through one entry point.

    import tenfold.tuning as tt
    model = tt.apply(vit, "lora-qv", tt.LoraQVOptions(rank=8))   # or rank=8, or {"rank": 8}
    tt.count_parameters(model)["trainable"]

Methods register themselves in :mod:`tenfold.tuning.registry`; ``tt.METHODS`` lists them, each with its
options dataclass (:mod:`tenfold.tuning.options`, ``tt.options_class(name)``).
"""

from tenfold.tuning.registry import (
    FAMILIES,
    METHODS,
    TuningMethod,
    apply,
    count_parameters,
    get_method,
    make_options,
    method_names,
    options_class,
    register_method,
)
from tenfold.tuning.options import (  # noqa: E402
    AdaptFormerOptions,
    BitFitOptions,
    ConvpassOptions,
    FullOptions,
    HoulsbyOptions,
    KDOptions,
    LinearOptions,
    LionOptions,
    LoraOptions,
    LoraQVOptions,
    MethodOptions,
    Net2NetOptions,
    PfeifferOptions,
    SSFOptions,
    VPTOptions,
    WeightSelectionOptions,
)
from tenfold.tuning import adapters, baselines, parameters, prompts, remapping  # noqa: F401,E402  (register methods)
from tenfold.tuning.export import load_tuned, merge, save_tuned  # noqa: E402
from tenfold.tuning.foundation import build_vit, foundation_model  # noqa: E402

import importlib.util as _util  # noqa: E402

if _util.find_spec("tenfold.tuning.lion") is not None:  # LION (issue 7) registers itself once its file exists
    from tenfold.tuning import lion  # noqa: F401,E402

__all__ = ["FAMILIES", "METHODS", "TuningMethod", "apply", "build_vit", "count_parameters", "foundation_model",
           "get_method", "load_tuned", "make_options", "merge", "method_names", "options_class", "register_method",
           "save_tuned", "MethodOptions", "LinearOptions", "FullOptions", "VPTOptions", "HoulsbyOptions",
           "PfeifferOptions", "AdaptFormerOptions", "ConvpassOptions", "LoraOptions", "LoraQVOptions",
           "BitFitOptions", "SSFOptions", "KDOptions", "WeightSelectionOptions", "Net2NetOptions", "LionOptions"]
