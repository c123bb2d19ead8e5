"""The registry of tuning methods and the one entry point :func:`apply`.

A method is a function ``apply_fn(model, **options) -> model`` that freezes the backbone, adds the
method's parameters and leaves exactly those (plus the classifier head) trainable, and an options
dataclass (:mod:`tenfold.tuning.options`) that holds its defaults and validates values. Methods register
themselves with :func:`register_method`; ``tenfold.tuning.METHODS`` lists them in registration order::

    register_method("bitfit", apply_bitfit, family="parameter", description="train every bias",
                    options=BitFitOptions)
    model = tenfold.tuning.apply(vit, "bitfit")

Every tuned model carries ``model.tenfold_tuning = {"method": name, "options": {...}, "stack": [...]}``
(the JSON-serialisable options of the last method, and every method applied in turn), which
:func:`tenfold.tuning.save_tuned` stores next to the tensors.

Composition: a second method may be applied to a tuned model; every tensor that was trainable before stays
trainable (the first method is never frozen by the second), ``save_tuned`` writes them all and
``load_tuned`` re-applies the methods in turn. Refused with one line: the same method twice, ``weight-selection`` (an
initialisation) after another method, any method after ``merge`` (the folded weights would not be saved) and after a method that must come last (``kd``).
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from torch import nn

from tenfold.errors import ConfigError, require
from tenfold.tuning.options import MethodOptions, options_from_defaults

FAMILIES = ("baseline", "prompt", "adapter", "parameter", "remapping", "implicit")


@dataclass(frozen=True)
class TuningMethod:
    """One registered method: its apply function, survey family, description and options dataclass."""

    name: str
    apply_fn: Callable[..., nn.Module]
    family: str
    description: str
    options: type[MethodOptions]
    check_reach: bool = False  # apply() refuses models whose forward never reaches the method's new tensors
    initializer: bool = False  # only sets values, every parameter left trainable (all saved): load_tuned skips it
    last: bool = False  # wraps the model so that no other method may follow (kd: student + teacher)

    @property
    def defaults(self) -> dict[str, Any]:
        """Option name -> default, from the options dataclass."""
        return {f.name: f.default if f.default is not dataclasses.MISSING else f.default_factory()
                for f in dataclasses.fields(self.options)}


METHODS: dict[str, TuningMethod] = {}


def register_method(name: str, apply_fn: Callable[..., nn.Module], *, family: str, description: str,
                    options: type[MethodOptions] | None = None, defaults: dict[str, Any] | None = None,
                    check_reach: bool = False, initializer: bool = False, last: bool = False) -> TuningMethod:
    """Add a method to :data:`METHODS`. ``options``: its options dataclass (a :class:`MethodOptions`
    subclass, whose fields ``apply_fn`` takes as keywords); or, as before, ``defaults``: a dict naming every
    option ``apply_fn`` accepts (a dataclass is made from it, with type checks only).

    ``check_reach``: after ``apply_fn`` a forward pass checks that every new trainable tensor is on the
    autograd graph, and a model whose forward bypasses them is refused
    (:func:`tenfold.tuning.common.require_reached`)."""
    require(isinstance(name, str) and name != "", "name", name, "a non-empty method name")
    require(family in FAMILIES, "family", family, f"one of {', '.join(FAMILIES)}")
    if name in METHODS and METHODS[name].apply_fn.__module__ != apply_fn.__module__:
        raise ConfigError(f"tuning method {name!r} is registered twice "
                          f"({METHODS[name].apply_fn.__module__} and {apply_fn.__module__})")
    if options is None:
        options = options_from_defaults(name, dict(defaults or {}))
    require(isinstance(options, type) and issubclass(options, MethodOptions) and dataclasses.is_dataclass(options),
            "options", options, "a dataclass subclass of tenfold.tuning.options.MethodOptions")
    method = TuningMethod(name, apply_fn, family, description, options, check_reach, initializer, last)
    METHODS[name] = method
    return method


def get_method(name: str) -> TuningMethod:
    """The method ``name``; an unknown name raises ConfigError listing every valid name."""
    if name in METHODS:
        return METHODS[name]
    close = difflib.get_close_matches(str(name), METHODS, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise ConfigError(f"method={name!r} is unknown{hint}: expected one of {', '.join(METHODS)}")


def options_class(name: str) -> type[MethodOptions]:
    """The options dataclass of method ``name`` (``tt.options_class("lora-qv")(rank=4)``)."""
    return get_method(name).options


def method_names(family: str | None = None) -> list[str]:
    """Registered method names in registration order, optionally only one family's."""
    return [m.name for m in METHODS.values() if family is None or m.family == family]


def _jsonable(value: Any) -> bool:
    if value is None or isinstance(value, (bool, int, float, str)):
        return True
    if isinstance(value, (list, tuple)):
        return all(_jsonable(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _jsonable(v) for k, v in value.items())
    return False


def make_options(method: str, options: MethodOptions | Mapping[str, Any] | None = None, where: str | None = None,
                 **overrides: Any) -> MethodOptions:
    """The options dataclass of ``method`` from a dataclass, a dict and/or keywords (keywords win).

    An option the method does not know, another method's dataclass or a bad value is a one-line
    :class:`ConfigError` naming ``<where>.<method>.<option>`` (with ``where=None``: the option alone, or
    "option 'x' of method 'm'" for an unknown one)."""
    spec = get_method(method)
    cls = spec.options
    if isinstance(options, MethodOptions):
        if type(options) is not cls:
            raise ConfigError(f"options={type(options).__name__}(...) is invalid for method {method!r}: "
                              f"expected tenfold.tuning.{cls.__name__}")
        values = {**options.values(), **overrides}
    elif options is None or isinstance(options, Mapping):
        values = {**dict(options or {}), **overrides}
    else:
        raise ConfigError(f"options={type(options).__name__} is invalid for method {method!r}: expected "
                          f"{cls.__name__}, a dict or keywords")
    known = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(values) - set(known), key=str)
    if unknown:
        valid = ", ".join(sorted(known)) or "no options"
        label = f"{where}.{method}.{unknown[0]}" if where else f"option {unknown[0]!r} of method {method!r}"
        raise ConfigError(f"{label} is unknown: expected one of {valid}")
    try:
        return cls(**values)
    except ConfigError as err:
        if where:
            raise ConfigError(f"{where}.{method}.{err}") from None
        raise


def check_options(method: str, options: Mapping[str, Any], where: str | None = "options", values: bool = True) -> None:
    """Refuse, with a :class:`ConfigError` naming ``<where>.<method>.<option>``, an option the method does
    not know or a value its options dataclass refuses (``values=False``: the names only). Experiments call
    it on their config before any work."""
    if values:
        make_options(method, options, where=where)
        return
    known = {f.name for f in dataclasses.fields(get_method(method).options)}
    unknown = sorted(set(options) - known)
    if unknown:
        label = f"{where}.{method}.{unknown[0]}" if where else f"option {unknown[0]!r} of method {method!r}"
        raise ConfigError(f"{label} is unknown: expected one of {', '.join(sorted(known)) or 'no options'}")


FEATURE_WRAPPERS = ("FeatureGetterNet", "FeatureListNet", "FeatureDictNet", "FeatureHookNet")


def _refuse_feature_wrapper(model: nn.Module, method: str) -> None:
    if type(model).__name__ in FEATURE_WRAPPERS:
        raise ConfigError(f"model={type(model).__name__} is a timm features_only wrapper: apply method {method!r} "
                          "to the classification model (timm.create_model without features_only), then wrap the "
                          "tuned model (timm.models.FeatureGetterNet / FeatureListNet)")


def _stack(info: dict) -> list[dict]:
    return list(info.get("stack") or [{"method": info["method"], "options": info["options"]}])


def _check_composable(info: dict, spec: TuningMethod) -> None:
    """A second method on a tuned model: refused when it cannot be saved and restored with the first."""
    stack = _stack(info)
    names = [entry["method"] for entry in stack]
    if info.get("merged"):
        raise ConfigError(f"model is merged (method {names[-1]!r} folded into its weights): apply method "
                          f"{spec.name!r} before tenfold.tuning.merge, so that save_tuned/load_tuned restore both")
    if spec.name in names:
        raise ConfigError(f"method {spec.name!r} is already applied to this model ({' + '.join(names)}): apply it once")
    if spec.initializer:
        raise ConfigError(f"method {spec.name!r} sets a model's initial weights: apply it first, before "
                          f"{' + '.join(names)}")
    previous = METHODS.get(names[-1])
    if previous is not None and previous.last:
        raise ConfigError(f"method {names[-1]!r} must be the last method applied: apply {spec.name!r} to the model "
                          f"before {names[-1]!r}")


def apply(model: nn.Module, method: str, options: MethodOptions | Mapping[str, Any] | None = None,
          /, **kwargs: Any) -> nn.Module:
    """Tune ``model`` with ``method``: returns the tuned model (usually ``model`` itself, modified in
    place) with exactly the method's parameters and the head trainable.

    ``options``: the method's options dataclass (``tt.LoraQVOptions(rank=4)``) or a dict; keywords override
    it. Options not given take the dataclass defaults; an unknown option or a bad value is a one-line
    ConfigError. On a model already tuned, the tensors the first method trains stay trainable (see the
    module docstring for what is refused).
    """
    spec = get_method(method)
    opts = make_options(method, options, **kwargs)
    _refuse_feature_wrapper(model, method)
    previous = getattr(model, "tenfold_tuning", None)
    keep: set[int] = set()
    if previous is not None:
        _check_composable(previous, spec)
        keep = {id(p) for p in model.parameters() if p.requires_grad}
    values = opts.values()
    tuned = spec.apply_fn(model, **values)
    for p in tuned.parameters():
        if id(p) in keep:  # the earlier method's tensors: the new method's freeze() must not drop them
            p.requires_grad_(True)
    if spec.check_reach:
        from tenfold.tuning.common import require_reached

        require_reached(tuned, spec.name)
    saved = {k: (list(v) if isinstance(v, tuple) else v) for k, v in values.items() if _jsonable(v)}
    entry = {"method": spec.name, "options": saved}
    stack = [*_stack(previous), entry] if previous is not None else [entry]
    tuned.tenfold_tuning = {"method": spec.name, "options": saved, "stack": stack}
    return tuned


def count_parameters(model: nn.Module) -> dict[str, Any]:
    """``{"trainable", "total", "head", "trainable_without_head", "by_group"}`` for ``model``.

    ``by_group`` counts trainable parameters per top-level module name (``head``, ``blocks``, ...);
    ``head`` is the trainable classifier head (timm's ``get_classifier()``). Shared tensors count once.
    """
    seen: set[int] = set()
    total = trainable = 0
    groups: dict[str, int] = {}
    for name, p in model.named_parameters():
        if id(p) in seen:
            continue
        seen.add(id(p))
        total += p.numel()
        if p.requires_grad:
            trainable += p.numel()
            group = _group_of(name)
            groups[group] = groups.get(group, 0) + p.numel()
    head = _head_parameters(model)
    return {"trainable": trainable, "total": total, "head": head,
            "trainable_without_head": trainable - head, "by_group": groups}


_WRAPPER_PREFIXES = ("base_model.model.", "student.", "_orig_mod.")


def _group_of(name: str) -> str:
    for prefix in _WRAPPER_PREFIXES:
        if name.startswith(prefix):
            name = name[len(prefix):]
    return name.split(".")[0]


def _head_parameters(model: nn.Module) -> int:
    """Trainable parameters of the classifier heads (timm's ``get_classifier()``: ResNet's ``fc``, both
    heads of DeiT-distilled, peft's wrapped copy; a model without one counts 0)."""
    from tenfold.tuning.common import classifiers

    try:
        heads = classifiers(model)
    except ConfigError:
        return 0
    seen: set[int] = set()
    count = 0
    for head in heads:
        for p in head.parameters():
            if p.requires_grad and id(p) not in seen:
                seen.add(id(p))
                count += p.numel()
    return count
