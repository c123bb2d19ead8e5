"""Typed options of every tuning method: one frozen dataclass per method, the single place for its defaults.

Like peft's ``LoraConfig``: build one, it is validated in ``__post_init__`` (a one-line
:class:`~tenfold.errors.ConfigError` naming the field and what was expected), and pass it to
:func:`tenfold.tuning.apply`::

    import tenfold.tuning as tt
    model = tt.apply(vit, "lora-qv", tt.LoraQVOptions(rank=4))
    model = tt.apply(vit, "lora-qv", rank=4)              # the same: keywords are converted
    model = tt.apply(vit, "lora-qv", {"rank": 4})         # the same: a dict (experiment configs)

``tt.options_class("lora-qv")`` is ``LoraQVOptions``; ``tt.METHODS[name].defaults`` is the dict of its
defaults. Options that are not plain data (a KD teacher) are checked by the method when it is applied.
"""

from __future__ import annotations

import copy
import dataclasses
import re
from dataclasses import dataclass, field
from typing import Any, ClassVar

from torch import nn

from tenfold.errors import ConfigError, require

ADAPTER_ACTIVATIONS = ("relu", "gelu")
QKV_PATTERN = r".*\.attn\.qkv"
# ViT blocks are blocks.<i>; Swin's are layers.<s>.blocks.<i> (same sublayer names)
SSF_PATTERN = r"patch_embed\.proj|(layers\.\d+\.)?blocks\.\d+\.(norm1|attn\.qkv|attn\.proj|norm2|mlp\.fc1|mlp\.fc2)|norm"


@dataclass(frozen=True)
class MethodOptions:
    """Base of every method's options. ``__post_init__`` checks each field against the type of its default
    (an int where a float is expected is fine; bools are never numbers), then the method's own rules
    (:meth:`check`)."""

    method: ClassVar[str] = ""

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value, default = getattr(self, f.name), f.default
            if default is None or default is dataclasses.MISSING:
                continue
            expected = type(default).__name__
            if isinstance(default, bool) or isinstance(value, bool):
                ok = isinstance(default, bool) and isinstance(value, bool)
            elif isinstance(default, float):
                ok = isinstance(value, (int, float))
            else:
                ok = isinstance(value, type(default))
            require(ok, f.name, value, f"{expected}, like the default {default!r}")
        self.check()

    def check(self) -> None:
        """The method's own value rules (overridden)."""

    def values(self) -> dict[str, Any]:
        """Field name -> value (not copied: a teacher module stays the same object)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}


def _count(opts: MethodOptions, name: str, minimum: int = 1) -> None:
    value = getattr(opts, name)
    require(isinstance(value, int) and value >= minimum, name, value, f"an integer >= {minimum}")


def _seed(opts: MethodOptions) -> None:
    require(isinstance(opts.seed, int) and opts.seed >= 0, "seed", opts.seed, "a non-negative integer")


def _dropout(opts: MethodOptions) -> None:
    require(0 <= opts.dropout < 1, "dropout", opts.dropout, "a dropout probability in [0, 1)")


def _regex(opts: MethodOptions) -> None:
    try:
        re.compile(opts.target_modules)
    except re.error as exc:
        raise ConfigError(f"target_modules={opts.target_modules!r} is invalid: expected a regular expression "
                          f"over module names ({exc})") from None


# --- baselines ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class LinearOptions(MethodOptions):
    """``linear``: no options (the head trains)."""


@dataclass(frozen=True)
class FullOptions(MethodOptions):
    """``full``: no options (every parameter trains)."""


# --- prompts -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class VPTOptions(MethodOptions):
    """``vpt-shallow`` / ``vpt-deep``: ``length`` prompt tokens p (0: none), init seed."""

    length: int = 10
    seed: int = 0

    def check(self) -> None:
        _count(self, "length", 0)
        _seed(self)


# --- adapters ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _AdapterOptions(MethodOptions):
    hidden: int = 8
    dropout: float = 0.0
    seed: int = 0

    def check(self) -> None:
        _count(self, "hidden")
        _dropout(self)
        _seed(self)


@dataclass(frozen=True)
class HoulsbyOptions(_AdapterOptions):
    """``houlsby``: bottleneck width k, activation phi, dropout, init seed."""

    activation: str = "gelu"

    def check(self) -> None:
        super().check()
        require(self.activation in ADAPTER_ACTIVATIONS, "activation", self.activation,
                f"one of {', '.join(ADAPTER_ACTIVATIONS)}")


@dataclass(frozen=True)
class PfeifferOptions(HoulsbyOptions):
    """``pfeiffer``: as Houlsby, ReLU by default."""

    activation: str = "relu"


@dataclass(frozen=True)
class AdaptFormerOptions(_AdapterOptions):
    """``adaptformer``: bottleneck width k, scale s > 0, dropout, init seed."""

    scale: float = 0.1
    dropout: float = 0.1

    def check(self) -> None:
        super().check()
        require(self.scale > 0, "scale", self.scale, "a positive adapter scale s")


@dataclass(frozen=True)
class ConvpassOptions(_AdapterOptions):
    """``convpass``: bottleneck width k, bypass scale s > 0, dropout, init seed."""

    scale: float = 1.0
    dropout: float = 0.1

    def check(self) -> None:
        super().check()
        require(self.scale > 0, "scale", self.scale, "a positive bypass scale s")


# --- parameters --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class LoraQVOptions(MethodOptions):
    """``lora-qv``: rank r, alpha (scale alpha / r), dropout on the LoRA input, target regex, init seed."""

    rank: int = 8
    alpha: float = 8.0
    dropout: float = 0.0
    target_modules: str = QKV_PATTERN
    seed: int = 0

    def check(self) -> None:
        _count(self, "rank")
        require(self.alpha > 0, "alpha", self.alpha, "a positive LoRA alpha")
        _dropout(self)
        _regex(self)
        _seed(self)


@dataclass(frozen=True)
class LoraOptions(LoraQVOptions):
    """``lora`` (peft): as ``lora-qv`` plus peft's ``use_dora`` and ``use_rslora`` (scale alpha / sqrt r)."""

    use_dora: bool = False
    use_rslora: bool = False


@dataclass(frozen=True)
class BitFitOptions(MethodOptions):
    """``bitfit``: no options (every bias trains)."""


@dataclass(frozen=True)
class SSFOptions(MethodOptions):
    """``ssf``: target regex, init standard deviation of gamma - 1 and beta, init seed."""

    target_modules: str = SSF_PATTERN
    std: float = 0.02
    seed: int = 0

    def check(self) -> None:
        _regex(self)
        require(self.std >= 0, "std", self.std, "a non-negative init standard deviation")
        _seed(self)


# --- remapping ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class KDOptions(MethodOptions):
    """``kd``: the frozen ``teacher`` (required when applied), temperature T > 0, weight alpha in [0, 1]."""

    teacher: nn.Module | None = field(default=None, compare=False)
    temperature: float = 4.0
    alpha: float = 0.5

    def check(self) -> None:
        require(self.teacher is None or isinstance(self.teacher, nn.Module), "teacher", type(self.teacher).__name__,
                "a teacher nn.Module")
        require(self.temperature > 0, "temperature", self.temperature, "a positive temperature T")
        require(0 <= self.alpha <= 1, "alpha", self.alpha, "a distillation weight in [0, 1]")


@dataclass(frozen=True)
class WeightSelectionOptions(MethodOptions):
    """``weight-selection``: the ``teacher`` ViT (required when applied), block map, whether to copy the head."""

    teacher: nn.Module | None = field(default=None, compare=False)
    layers: str = "first"
    copy_head: bool = False

    def check(self) -> None:
        require(self.teacher is None or isinstance(self.teacher, nn.Module), "teacher", type(self.teacher).__name__,
                "a teacher nn.Module")
        require(self.layers in ("first", "even"), "layers", self.layers, "'first' or 'even'")


@dataclass(frozen=True)
class Net2NetOptions(MethodOptions):
    """``net2net``: new MLP width (None: twice as wide), noise on the copied units, seed of the copies."""

    mlp_hidden: int | None = None
    noise: float = 0.0
    seed: int = 0

    def check(self) -> None:
        if self.mlp_hidden is not None:
            _count(self, "mlp_hidden")
        require(self.noise >= 0, "noise", self.noise, "a non-negative noise scale")
        _seed(self)


# --- implicit ----------------------------------------------------------------------------------------
SOLVER_NAMES = ("fixed_point", "anderson", "broyden", "anderson_torchdeq")


@dataclass(frozen=True)
class LionOptions(MethodOptions):
    """``lion``: input-layer width h, output-layer state size r, contraction gamma in (0, 1), image summary
    p x p (``pool=0``: none, the output layer reads the features only), the equilibrium solver forward (``solver``, ``f_max_iter`` in training, ``eval_f_max_iter`` in
    evaluation, relative residual ``f_tol``) and backward (``backward="ift"``: implicit differentiation with
    ``b_solver`` to ``b_tol`` within ``b_max_iter``; ``"phantom"``: ``phantom_steps`` steps, 1 = JFB), seed,
    and ``solve``: ``"equilibrium"`` (the fixed point) or ``"one_step"`` (ablation: one explicit step of the
    same layers from z0 = 0, plain autograd, no solver).

    Defaults: torchdeq's fixed-point iteration forward and backward (measured fewest steps on LION's own
    layers, docs/lion.md)."""

    hidden: int = 4
    rank: int = 8
    gamma: float = 0.9
    pool: int = 2
    solver: str = "fixed_point"
    f_max_iter: int = 30
    eval_f_max_iter: int = 50
    f_tol: float = 1e-4
    backward: str = "ift"
    phantom_steps: int = 1
    b_solver: str = "fixed_point"
    b_max_iter: int = 30
    b_tol: float = 1e-6
    seed: int = 0
    solve: str = "equilibrium"

    def check(self) -> None:
        require(self.solve in ("equilibrium", "one_step"), "solve", self.solve,
                "'equilibrium' (the fixed point) or 'one_step' (ablation: one explicit step of the same layer)")
        require(isinstance(self.pool, int) and self.pool >= 0, "pool", self.pool,
                "an integer >= 0 (0: no raw-pixel summary in the output layer)")
        for name in ("hidden", "rank", "f_max_iter", "eval_f_max_iter", "phantom_steps", "b_max_iter"):
            _count(self, name)
        require(0 < self.gamma < 1, "gamma", self.gamma,
                "a contraction factor in (0, 1) (gamma >= 1 gives no unique fixed point)")
        for name in ("solver", "b_solver"):
            require(getattr(self, name) in SOLVER_NAMES, name, getattr(self, name), f"one of {', '.join(SOLVER_NAMES)}")
        require(self.backward in ("ift", "phantom"), "backward", self.backward, "'ift' or 'phantom'")
        for name in ("f_tol", "b_tol"):
            require(getattr(self, name) > 0, name, getattr(self, name), "a tolerance > 0")
        _seed(self)


def options_from_defaults(name: str, defaults: dict[str, Any]) -> type[MethodOptions]:
    """An options dataclass for a method registered with a plain ``defaults`` dict (the older
    ``register_method(..., defaults={...})``): the same type checks, no value rules."""
    fields = [(k, Any if v is None else type(v),
               field(default_factory=lambda v=v: copy.deepcopy(v)) if isinstance(v, (list, dict, set))
               else field(default=v)) for k, v in defaults.items()]
    cls_name = "".join(part.capitalize() for part in re.split(r"[^0-9a-zA-Z]+", name) if part) + "Options"
    return dataclasses.make_dataclass(cls_name or "Options", fields, bases=(MethodOptions,), frozen=True)
