"""The registry of tuning methods and the one entry point :func:`apply`.

A method is a function ``apply_fn(model, **options) -> model`` that freezes the backbone, adds the
method's parameters and leaves exactly those (plus the classifier head) trainable. Methods register
themselves with :func:`register_method`; ``tenfold.tuning.METHODS`` lists them in registration order::

    register_method("bitfit", apply_bitfit, family="parameter", description="train every bias",
                    defaults={})
    model = tenfold.tuning.apply(vit, "bitfit")

Every tuned model carries ``model.tenfold_tuning = {"method": name, "options": {...}}`` (the
JSON-serialisable options), which :func:`tenfold.tuning.save_tuned` stores next to the tensors.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from tenfold.errors import ConfigError, require

FAMILIES = ("baseline", "prompt", "adapter", "parameter", "remapping", "implicit")


@dataclass(frozen=True)
class TuningMethod:
    """One registered method: its apply function, survey family, description and default options."""

    name: str
    apply_fn: Callable[..., nn.Module]
    family: str
    description: str
    defaults: dict[str, Any] = field(default_factory=dict)
    check_reach: bool = False  # apply() refuses models whose forward never reaches the method's new tensors


METHODS: dict[str, TuningMethod] = {}


def register_method(name: str, apply_fn: Callable[..., nn.Module], *, family: str, description: str,
                    defaults: dict[str, Any], check_reach: bool = False) -> TuningMethod:
    """Add a method to :data:`METHODS`; ``defaults`` names every option ``apply_fn`` accepts.

    ``check_reach``: after ``apply_fn`` a forward pass checks that every new trainable tensor is on the
    autograd graph, and a model whose forward bypasses them is refused
    (:func:`tenfold.tuning.common.require_reached`)."""
    require(isinstance(name, str) and name != "", "name", name, "a non-empty method name")
    require(family in FAMILIES, "family", family, f"one of {', '.join(FAMILIES)}")
    if name in METHODS and METHODS[name].apply_fn.__module__ != apply_fn.__module__:
        raise ConfigError(f"tuning method {name!r} is registered twice "
                          f"({METHODS[name].apply_fn.__module__} and {apply_fn.__module__})")
    method = TuningMethod(name, apply_fn, family, description, dict(defaults), check_reach)
    METHODS[name] = method
    return method


def get_method(name: str) -> TuningMethod:
    """The method ``name``; an unknown name raises ConfigError listing every valid name."""
    if name in METHODS:
        return METHODS[name]
    close = difflib.get_close_matches(str(name), METHODS, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise ConfigError(f"method={name!r} is unknown{hint}: expected one of {', '.join(METHODS)}")


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


def check_options(method: str, options: dict[str, Any], where: str | None = "options", values: bool = True) -> None:
    """Refuse, with a :class:`ConfigError` naming ``<where>.<method>.<option>`` (with ``where=None``:
    "option 'x' of method 'm'"), an option the method does not
    know or a value that cannot be right: another type than the default's (an int where the default is a
    float is fine), a count (an int option with a positive default: ranks, widths, lengths, iterations)
    below 1, a negative float (scales, standard deviations, tolerances), a dropout outside [0, 1) or a
    temperature that is not positive. ``values=False`` checks only the names. Experiments call it on their
    config before any work; :func:`apply` checks the names and lets each method check its values."""
    spec = get_method(method)
    unknown = sorted(set(options) - set(spec.defaults))
    if unknown:
        valid = ", ".join(sorted(spec.defaults)) or "no options"
        label = f"{where}.{method}.{unknown[0]}" if where else f"option {unknown[0]!r} of method {method!r}"
        raise ConfigError(f"{label} is unknown: expected one of {valid}")
    for key, value in (options.items() if values else ()):
        default = spec.defaults[key]
        name = f"{where}.{method}.{key}={value!r}" if where else f"option {key}={value!r} of method {method!r}"
        if default is None:
            continue
        if isinstance(default, bool) or isinstance(value, bool):
            if not (isinstance(default, bool) and isinstance(value, bool)):
                raise ConfigError(f"{name} is invalid: expected {type(default).__name__}, like the default {default!r}")
            continue
        if isinstance(default, (int, float)):
            if not isinstance(value, (int, float)) or (isinstance(default, int) and not isinstance(value, int)):
                raise ConfigError(f"{name} is invalid: expected {type(default).__name__}, like the default {default!r}")
            if isinstance(default, int) and default > 0 and key != "seed" and value < 1:
                raise ConfigError(f"{name} is invalid: expected a positive whole number")
            if value < 0:
                raise ConfigError(f"{name} is invalid: expected a non-negative number")
            if key == "dropout" and not value < 1:
                raise ConfigError(f"{name} is invalid: expected a dropout probability in [0, 1)")
            if key == "temperature" and value <= 0:
                raise ConfigError(f"{name} is invalid: expected a positive temperature")
        elif not isinstance(value, type(default)):
            raise ConfigError(f"{name} is invalid: expected {type(default).__name__}, like the default {default!r}")


def apply(model: nn.Module, method: str, **options: Any) -> nn.Module:
    """Tune ``model`` with ``method``: returns the tuned model (usually ``model`` itself, modified in
    place) with exactly the method's parameters and the head trainable.

    Options not given take the method's defaults; an option the method does not know is an error.
    """
    spec = get_method(method)
    check_options(method, options, where=None, values=False)  # the method checks its values with its own messages
    resolved = {**spec.defaults, **options}
    tuned = spec.apply_fn(model, **resolved)
    if spec.check_reach:
        from tenfold.tuning.common import require_reached

        require_reached(tuned, spec.name)
    saved = {k: (list(v) if isinstance(v, tuple) else v) for k, v in resolved.items() if _jsonable(v)}
    tuned.tenfold_tuning = {"method": spec.name, "options": saved}
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
