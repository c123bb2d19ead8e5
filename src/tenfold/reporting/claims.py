"""The evidence contract: every experiment declares its claims in one list beside its config.

Two kinds of statements::

    CLAIMS = [
        PaperClaim("a hidden layer beats a linear model", metric="error_ratio",
                   at_most="thresholds.max_error_ratio",      # a config field; its description is the source
                   ablation=["hidden=0"],                     # --set overrides that remove the mechanism
                   paper="MNIST (LeCun et al. 1998): linear 12.0% vs 300-hidden-unit net 4.7% test error"),
        Check("test accuracy", metric="test_acc", at_least="thresholds.min_test_acc"),
    ]

    @register("digits-mlp", paper="digits-mlp", config=DigitsMLPConfig, claims=CLAIMS)
    def run(cfg, ctx) -> Result:
        return Result(metrics={"test_acc": acc}, samples={"error_ratio": [r0, r1, r2]})

* A :class:`PaperClaim` is the paper's effect measured against a baseline or an ablation at this scale.
  It names ``ablation``, the ``--set`` overrides that remove the mechanism it tests (``tenfold reproduce
  --falsify`` reruns the experiment with them and records whether the claim then fails), and ``paper``,
  the paper's published figure with its setting. Its metric is a list of per-seed values in
  ``Result.samples`` with at least ``seeds`` (3) entries; the claim reads their mean and reports their
  spread. ``seeds=1`` needs ``why_one_run`` (a deterministic quantity: a memory count, an exact solver).
* A :class:`Check` is a property of the implementation: a ratio fixed by construction, a solver's
  tolerance, a round trip, an identity that follows from a definition. It reads ``Result.metrics``
  (or the mean of ``Result.samples``).

Thresholds are config fields (``at_least``, ``at_most``, ``between`` name their dotted paths), so they
are fixed before the run, shown by ``tenfold config`` and recorded in ``config.yaml``; each field's
``description`` says where the number comes from. A claim that breaks these rules is a
:class:`ClaimError` when its experiment registers, so a malformed claim never reaches a report.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import KW_ONLY, dataclass
from typing import Any, ClassVar

from pydantic import BaseModel

from tenfold.errors import TenfoldError

MIN_SEEDS = 3
# verdicts that `reproduce --strict` fails on; the report also bolds an ad-hoc claim that fails
STRICT_FAILURES = ("not reproduced", "not falsified", "ablation failed", "fail")
FLAGGED = STRICT_FAILURES + ("fails",)


class ClaimError(TenfoldError):
    """A claim that is malformed (at registration) or cannot be evaluated (a metric is missing)."""


@dataclass(frozen=True)
class _Statement:
    name: str
    _: KW_ONLY
    metric: str
    at_least: str | None = None
    at_most: str | None = None
    between: tuple[str, str] | None = None
    kind: ClassVar[str] = ""

    def __post_init__(self) -> None:
        for name in ("between", "ablation"):
            if isinstance(getattr(self, name, None), list):
                object.__setattr__(self, name, tuple(getattr(self, name)))

    # -- the threshold ------------------------------------------------------------------------------
    def threshold_fields(self) -> list[str]:
        if self.between is not None:
            return list(self.between)
        return [p for p in (self.at_least, self.at_most) if p is not None]

    def bounds(self, cfg: BaseModel) -> tuple[float, float]:
        """(low, high) read from the config; an absent side is -inf / +inf."""
        if self.between is not None:
            return float(_get(cfg, self.between[0])), float(_get(cfg, self.between[1]))
        low = float(_get(cfg, self.at_least)) if self.at_least else -math.inf
        high = float(_get(cfg, self.at_most)) if self.at_most else math.inf
        return low, high

    def threshold_text(self, cfg: BaseModel) -> str:
        low, high = self.bounds(cfg)
        if self.between is not None:
            return f"in [{low:g}, {high:g}]"
        return f">= {low:g}" if self.at_least else f"<= {high:g}"

    def sources(self, config_cls: type[BaseModel]) -> str:
        return "; ".join(f"{p}: {_field(config_cls, p).description}" for p in self.threshold_fields())

    # -- checks made when the experiment registers ----------------------------------------------------
    def validate(self, experiment: str, config_cls: type[BaseModel]) -> None:
        where = f"experiment {experiment!r}, {self.kind} claim {self.name!r}"
        if not self.name.strip():
            raise ClaimError(f"experiment {experiment!r}: a claim has an empty name")
        if not self.metric.strip():
            raise ClaimError(f"{where}: metric= is empty")
        sides = sum(x is not None for x in (self.at_least, self.at_most, self.between))
        if sides != 1:
            raise ClaimError(f"{where}: give exactly one of at_least=, at_most=, between= (a config field path)")
        if self.between is not None and len(self.between) != 2:
            raise ClaimError(f"{where}: between= takes two config field paths (low, high)")
        for path in self.threshold_fields():
            info = _field(config_cls, path, where)
            if not (info.description or "").strip():
                raise ClaimError(f"{where}: threshold field {path!r} has no description; say where its value "
                                 "comes from (the paper, the theory, the baseline's spread)")
            if not _is_number(info.default):
                raise ClaimError(f"{where}: threshold field {path!r} must be a number, got {info.default!r}")


@dataclass(frozen=True)
class PaperClaim(_Statement):
    """The paper's effect against a baseline or an ablation; falsified by rerunning with ``ablation``."""

    _: KW_ONLY
    ablation: tuple[str, ...] = ()
    paper: str = ""
    seeds: int = MIN_SEEDS
    why_one_run: str = ""
    kind: ClassVar[str] = "paper"

    def validate(self, experiment: str, config_cls: type[BaseModel]) -> None:
        super().validate(experiment, config_cls)
        where = f"experiment {experiment!r}, paper claim {self.name!r}"
        if not self.ablation:
            raise ClaimError(f"{where}: ablation= is empty; name the --set overrides that remove the mechanism "
                             "the claim tests")
        if not self.paper.strip():
            raise ClaimError(f"{where}: paper= is empty; give the paper's published figure and its setting")
        if self.seeds < 1:
            raise ClaimError(f"{where}: seeds={self.seeds} must be at least 1")
        if self.seeds < MIN_SEEDS and not self.why_one_run.strip():
            raise ClaimError(f"{where}: a comparison needs at least {MIN_SEEDS} seeds; seeds={self.seeds} "
                             "needs why_one_run= (why one run measures it, e.g. a deterministic count)")
        _validate_overrides(where, config_cls, self.ablation)


@dataclass(frozen=True)
class Check(_Statement):
    """A property of the implementation (holds by construction when the code is right)."""

    kind: ClassVar[str] = "check"


Statement = PaperClaim | Check


# -- registration --------------------------------------------------------------------------------------
def validate_claims(experiment: str, config_cls: type[BaseModel], claims: list | tuple) -> tuple[Statement, ...]:
    """Check every statement of ``experiment`` against its config class; raise :class:`ClaimError`."""
    seen: set[str] = set()
    for claim in claims:
        if not isinstance(claim, (PaperClaim, Check)):
            raise ClaimError(f"experiment {experiment!r}: claims must be PaperClaim or Check, got "
                             f"{type(claim).__name__}")
        if claim.name in seen:
            raise ClaimError(f"experiment {experiment!r}: two claims are named {claim.name!r}")
        seen.add(claim.name)
        claim.validate(experiment, config_cls)
    return tuple(claims)


def _validate_overrides(where: str, config_cls: type[BaseModel], overrides: tuple[str, ...]) -> None:
    from tenfold.config import apply_overrides, build

    try:
        data = apply_overrides(config_cls().model_dump(mode="json"), list(overrides))
        build(config_cls, data, source="ablation")
    except TenfoldError as exc:
        raise ClaimError(f"{where}: ablation {list(overrides)} is not a valid override of the config: {exc}") from None


def _field(config_cls: type[BaseModel], path: str, where: str = ""):
    """The pydantic FieldInfo at dotted ``path`` of ``config_cls`` (nested configs are followed)."""
    cls: Any = config_cls
    parts = path.split(".")
    for i, part in enumerate(parts):
        fields = getattr(cls, "model_fields", None)
        if fields is None or part not in fields:
            raise ClaimError(f"{where or 'claim'}: threshold field {path!r} is not a field of "
                             f"{config_cls.__name__}")
        info = fields[part]
        if i == len(parts) - 1:
            return info
        cls = info.annotation
    raise AssertionError("unreachable")


def _get(cfg: BaseModel, path: str) -> Any:
    node: Any = cfg
    for part in path.split("."):
        node = getattr(node, part)
    return node


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


# -- evaluation ----------------------------------------------------------------------------------------
def values_of(metric: str, metrics: dict[str, float], samples: dict[str, list[float]]) -> list[float] | None:
    if metric in samples:
        return [float(v) for v in samples[metric]]
    if metric in metrics:
        return [float(metrics[metric])]
    return None


def evaluate_claim(claim: Statement, cfg: BaseModel, metrics: dict[str, float],
                   samples: dict[str, list[float]], experiment: str = "") -> dict[str, Any]:
    """The claim's record in results.json: value (mean), spread, n, threshold and whether it holds."""
    values = values_of(claim.metric, metrics, samples)
    where = f"experiment {experiment!r}, {claim.kind} claim {claim.name!r}"
    if values is None or not values:
        raise ClaimError(f"{where}: the run reported no metric {claim.metric!r} (in Result.metrics or "
                         "Result.samples)")
    if isinstance(claim, PaperClaim) and len(values) < claim.seeds:
        raise ClaimError(f"{where}: {claim.metric!r} has {len(values)} per-seed value(s), the claim needs "
                         f"{claim.seeds} (put one value per seed in Result.samples)")
    finite = all(math.isfinite(v) for v in values)
    mean = statistics.fmean(values) if finite else math.nan
    std = statistics.stdev(values) if finite and len(values) > 1 else (0.0 if finite else math.nan)
    low, high = claim.bounds(cfg)
    holds = bool(finite and low <= mean <= high)
    record: dict[str, Any] = {
        "name": claim.name, "kind": claim.kind, "metric": claim.metric, "value": mean, "std": std,
        "n": len(values), "samples": values, "threshold": claim.threshold_text(cfg),
        "threshold_fields": claim.threshold_fields(), "source": claim.sources(type(cfg)), "holds": holds,
    }
    if isinstance(claim, PaperClaim):
        record |= {"ablation": list(claim.ablation), "paper": claim.paper}
    return record


def evaluate_claims(claims: tuple[Statement, ...], cfg: BaseModel, metrics: dict[str, float],
                    samples: dict[str, list[float]], experiment: str = "") -> list[dict[str, Any]]:
    return [evaluate_claim(c, cfg, metrics, samples, experiment) for c in claims]


def ablation_groups(claims: tuple[Statement, ...]) -> dict[tuple[str, ...], list[str]]:
    """Distinct ablations -> the names of the paper claims that share that run."""
    groups: dict[tuple[str, ...], list[str]] = {}
    for c in claims:
        if isinstance(c, PaperClaim):
            groups.setdefault(tuple(c.ablation), []).append(c.name)
    return groups


def verdict(record: dict[str, Any]) -> str:
    """One word or phrase for a claim record, as the report shows it.

    paper claims: ``reproduced`` (holds, and fails without its mechanism), ``not falsified`` (holds with
    the mechanism removed too), ``reproduced (ablation not run)``, ``not reproduced``; checks: ``pass`` /
    ``fail``; ad-hoc claims: ``holds`` / ``fails`` (unclassified).
    """
    kind = record.get("kind", "unclassified")
    if kind == "check":
        return "pass" if record["holds"] else "fail"
    if kind != "paper":
        return "holds" if record["holds"] else "fails"
    if not record["holds"]:
        return "not reproduced"
    if "ablated_holds" not in record:
        return "ablation failed" if record.get("ablation_error") else "reproduced (ablation not run)"
    return "not falsified" if record["ablated_holds"] else "reproduced"
