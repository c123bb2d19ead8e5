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

* A :class:`PaperClaim` is the paper's effect measured against a tuned baseline at this scale. It names
  ``ablation``, the ``--set`` overrides that remove only the mechanism it tests (same parameter count,
  optimizer, lr search and data order; ``tenfold reproduce --falsify`` reruns the experiment with them),
  ``paper``, the paper's published figure with its setting, and optionally ``arms``, the per-seed sample
  keys of the method arm and of the baseline arm (so an ablation that turns the method into the baseline
  by identity is detected). Its metric is a list of per-seed values in ``Result.samples``; the standard
  and paper tiers need at least ``seeds`` (5) of them. ``seeds=1`` needs ``why_one_run`` (a deterministic
  quantity: a memory count, an exact solver).
* **Verdicts come from 95% intervals** (Student t over the seeds, :func:`interval`): *reproduced* when the
  claim's interval lies on its side of the threshold and the ablated run's interval on the other side;
  *not reproduced* when the claim's interval lies on the wrong side; *not falsified* when the ablated
  interval also lies on the claim's side; *inconclusive* otherwise, with the seed count that would
  decide (:func:`seeds_needed`). An ablated run whose metric is identically 0 or 1 on every seed, or whose
  method arm equals the baseline arm seed for seed, is *ablation = baseline*: the claim is then a plain
  comparison and its falsification is no evidence.
* A paper claim whose metric already *is* the paired difference between the method and the method without its
  mechanism, both trained in the same run (same initialisation, batches and lr search per seed), sets
  ``ablation_in_run``: its ``ablation`` names the switch the in-run arm sets, ``--falsify`` does not rerun it
  (a rerun with the switch off compares the ablated model with itself), and an interval on the claim's side
  is *reproduced*.
* A paper claim may be **gated**: ``requires`` names other paper claims of the experiment that must hold
  (their interval on their side) before this one can be tested at all, e.g. a mechanism's ablation compared
  with a model that has not learned the task compares noise with noise. While a required claim does not
  hold, the gated claim's verdict is *not testable* (its figures are still reported) and ``--falsify``
  skips its ablation run when every claim that run serves is not testable.
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

from tenfold.errors import ConfigError, TenfoldError

MIN_SEEDS = 5        # per-seed values a comparison needs at the standard and paper tiers
MIN_SMOKE_SEEDS = 2  # ... and at the quick tier, which is a smoke run and no evidence
EVIDENCE_TIERS = ("standard", "paper")
# verdicts that `reproduce --strict` fails on; the report bolds them
STRICT_FAILURES = ("not reproduced", "not falsified", "inconclusive", "not testable", "ablation failed", "fail")
FLAGGED = STRICT_FAILURES + ("holds (ablation = baseline)",)
# the claim's metric of an ablated run that equals the baseline by construction (a difference or a ratio)
_IDENTITY_VALUES = (0.0, 1.0)


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
        for name in ("between", "ablation", "arms", "tiers", "requires"):
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
    arms: tuple[str, str] | None = None  # per-seed sample keys (method arm, baseline arm)
    requires: tuple[str, ...] = ()        # paper claims that must hold before this one is testable
    ablation_in_run: bool = False         # the metric is already method - ablated method, paired in one run
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
                             "needs why_one_run= (why fewer runs measure it, e.g. a deterministic count)")
        if self.arms is not None and (len(self.arms) != 2 or not all(isinstance(a, str) and a for a in self.arms)):
            raise ClaimError(f"{where}: arms= takes two per-seed sample keys (method arm, baseline arm)")
        _validate_overrides(where, config_cls, self.ablation)


@dataclass(frozen=True)
class Check(_Statement):
    """A property of the implementation (holds by construction when the code is right).

    ``tiers`` names the tiers whose budgets the property needs: a convergence property (chains that mix, a
    solver at its tolerance) is checked at the standard and paper tiers and reported as not checked at the
    quick smoke tier, whose budgets are sized for a demo."""

    _: KW_ONLY
    tiers: tuple[str, ...] = ("quick", "standard", "paper")
    kind: ClassVar[str] = "check"

    def validate(self, experiment: str, config_cls: type[BaseModel]) -> None:
        super().validate(experiment, config_cls)
        unknown = [t for t in self.tiers if t not in ("quick", "standard", "paper")]
        if unknown or not self.tiers:
            raise ClaimError(f"experiment {experiment!r}, check {self.name!r}: tiers={list(self.tiers)} must name "
                             "some of quick, standard, paper")


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
    paper_names = {c.name for c in claims if isinstance(c, PaperClaim)}
    for claim in claims:
        for name in getattr(claim, "requires", ()):
            if name == claim.name or name not in paper_names:
                raise ClaimError(f"experiment {experiment!r}, paper claim {claim.name!r}: requires={name!r} is not "
                                 "another paper claim of this experiment")
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


def tier_of(preset: str) -> str:
    """The evidence tier of a preset: ``quick`` (smoke run, no evidence), ``standard`` (the evidence) or
    ``paper`` (the GPU recipe; variants such as ``paper-gesture`` count as paper)."""
    for tier in ("quick", "standard", "paper"):
        if preset == tier or preset.startswith(f"{tier}-"):
            return tier
    return "quick"


# two-sided 95% Student t quantiles t_{0.975, df} for df = 1..30 (Student's table)
_T975 = [12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131,
         2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042]


def t_quantile(df: int) -> float:
    """t_{0.975, df}: the half-width factor of a two-sided 95% interval from ``df + 1`` values."""
    if df < 1:
        raise ValueError(f"df={df} must be at least 1")
    if df <= len(_T975):
        return _T975[df - 1]
    z = 1.959964  # Cornish-Fisher expansion of the t quantile around the normal one (error < 1e-4 for df > 30)
    return z + (z ** 3 + z) / (4 * df) + (5 * z ** 5 + 16 * z ** 3 + 3 * z) / (96 * df ** 2)


def interval(values: list[float]) -> tuple[float, float]:
    """The 95% confidence interval of the mean of ``values`` (Student t); one value is its own interval
    (a deterministic quantity, ``why_one_run``); non-finite values give (nan, nan)."""
    if not values or not all(math.isfinite(v) for v in values):
        return math.nan, math.nan
    mean = statistics.fmean(values)
    if len(values) == 1:
        return mean, mean
    half = t_quantile(len(values) - 1) * statistics.stdev(values) / math.sqrt(len(values))
    return mean - half, mean + half


def side(ci: tuple[float, float], low: float, high: float) -> str:
    """Where the interval ``ci`` lies against the claim's band [low, high]: ``"holds"`` (inside),
    ``"fails"`` (entirely outside, on one side), ``"straddles"`` (across a bound) or ``"undefined"`` (nan)."""
    lo, hi = ci
    if math.isnan(lo) or math.isnan(hi):
        return "undefined"
    if low <= lo and hi <= high:
        return "holds"
    if hi < low or lo > high:
        return "fails"
    return "straddles"


def seeds_needed(values: list[float], low: float, high: float, limit: int = 1000) -> int | None:
    """About how many seeds would make the interval clear the nearest bound at the observed mean and spread
    (None: the mean sits on the bound, or no spread to scale)."""
    if len(values) < 2 or not all(math.isfinite(v) for v in values):
        return None
    mean, sd = statistics.fmean(values), statistics.stdev(values)
    gap = min(abs(mean - b) for b in (low, high) if math.isfinite(b))
    if gap == 0 or sd == 0:
        return None
    for n in range(2, limit + 1):
        if t_quantile(n - 1) * sd / math.sqrt(n) < gap:
            return n
    return None


def seed_count(cfg: BaseModel) -> int | None:
    """How many seeds a config runs: its ``seeds`` field (a count or a list of seeds), None without one."""
    seeds = getattr(cfg, "seeds", None)
    if isinstance(seeds, (list, tuple)):
        return len(seeds)
    return seeds if isinstance(seeds, int) else None


def check_seeds(claims: tuple[Statement, ...], cfg: BaseModel, experiment: str, tier: str) -> None:
    """Refuse, before any work, an evidence-tier run whose ``seeds`` are fewer than its paper claims need
    (``evaluate_claim`` would otherwise fail only after the run)."""
    if tier not in EVIDENCE_TIERS:
        return
    need = max([c.seeds for c in claims if isinstance(c, PaperClaim)], default=1)
    count = seed_count(cfg)
    if count is not None and count < need:
        raise ConfigError(f"seeds={getattr(cfg, 'seeds')} runs {count} seed(s); {experiment}'s paper claims need "
                          f"{need} at the {tier} tier (a 95% interval over seeds): give at least {need}, or use "
                          "--preset quick for a smoke run with fewer")


def evaluate_claim(claim: Statement, cfg: BaseModel, metrics: dict[str, float],
                   samples: dict[str, list[float]], experiment: str = "", tier: str = "standard") -> dict[str, Any]:
    """The claim's record in results.json: mean, spread, n, 95% interval, threshold, and where the interval
    lies (``side``). Paper claims need ``claim.seeds`` per-seed values at the evidence tiers (``standard``,
    ``paper``) and 2 at the ``quick`` smoke tier."""
    values = values_of(claim.metric, metrics, samples)
    where = f"experiment {experiment!r}, {claim.kind} claim {claim.name!r}"
    if values is None or not values:
        raise ClaimError(f"{where}: the run reported no metric {claim.metric!r} (in Result.metrics or "
                         "Result.samples)")
    if isinstance(claim, PaperClaim):
        need = claim.seeds if tier in EVIDENCE_TIERS or claim.seeds < MIN_SMOKE_SEEDS else MIN_SMOKE_SEEDS
        if len(values) < need:
            raise ClaimError(f"{where}: {claim.metric!r} has {len(values)} per-seed value(s), the claim needs "
                             f"{need} at the {tier} tier (put one value per seed in Result.samples)")
    finite = all(math.isfinite(v) for v in values)
    mean = statistics.fmean(values) if finite else math.nan
    std = statistics.stdev(values) if finite and len(values) > 1 else (0.0 if finite else math.nan)
    low, high = claim.bounds(cfg)
    ci = interval(values)
    record: dict[str, Any] = {
        "name": claim.name, "kind": claim.kind, "metric": claim.metric, "value": mean, "std": std,
        "n": len(values), "ci95": list(ci), "samples": values, "threshold": claim.threshold_text(cfg),
        "bounds": [low, high], "threshold_fields": claim.threshold_fields(), "source": claim.sources(type(cfg)),
        "holds": bool(finite and low <= mean <= high), "tier": tier,
    }
    if isinstance(claim, Check) and tier not in claim.tiers:
        record |= {"holds": True, "not_checked": f"checked at the {' and '.join(claim.tiers)} tier(s) only"}
    if isinstance(claim, PaperClaim):
        record |= {"ablation": list(claim.ablation), "paper": claim.paper, "side": side(ci, low, high)}
        if claim.ablation_in_run:
            record["ablation_in_run"] = True
        if record["side"] == "straddles":
            record["seeds_needed"] = seeds_needed(values, low, high)
        if claim.arms is not None:
            record["arms"] = list(claim.arms)
    return record


def evaluate_claims(claims: tuple[Statement, ...], cfg: BaseModel, metrics: dict[str, float],
                    samples: dict[str, list[float]], experiment: str = "", tier: str = "standard") -> list[dict[str, Any]]:
    """Every statement's record; a gated claim (``requires``) whose required claims do not all hold (their
    95% interval on their side) is marked ``not_testable`` with the names of those that do not."""
    records = [evaluate_claim(c, cfg, metrics, samples, experiment, tier) for c in claims]
    by_name = {r["name"]: r for r in records}
    for claim, record in zip(claims, records):
        required = getattr(claim, "requires", ())
        if required:
            record["requires"] = list(required)
            missing = [n for n in required if by_name[n].get("side") != "holds"]
            if missing:
                record["not_testable"] = "needs " + ", ".join(f"'{n}'" for n in missing) + (
                    ", which does not hold" if len(missing) == 1 else ", which do not hold")
    return records


def ablation_groups(claims: tuple[Statement, ...]) -> dict[tuple[str, ...], list[str]]:
    """Distinct ablation reruns -> the names of the paper claims that share that run (claims whose ablation
    is paired inside the run, ``ablation_in_run``, need none)."""
    groups: dict[tuple[str, ...], list[str]] = {}
    for c in claims:
        if isinstance(c, PaperClaim) and not c.ablation_in_run:
            groups.setdefault(tuple(c.ablation), []).append(c.name)
    return groups


def ablation_is_baseline(record: dict[str, Any], ablated: dict[str, Any], ablated_samples: dict[str, list[float]],
                         tol: float = 1e-12) -> bool:
    """Whether the ablated run equals the claim's baseline by construction: its metric is identically 0 (a
    difference) or identically 1 (a ratio) on every seed, or the method arm's per-seed values equal the
    baseline arm's (``arms``)."""
    values = [float(v) for v in ablated.get("samples", [])]
    if values and any(all(abs(v - target) <= tol for v in values) for target in _IDENTITY_VALUES):
        return True
    arms = record.get("arms")
    if arms:
        method, base = ablated_samples.get(arms[0]), ablated_samples.get(arms[1])
        if method is not None and base is not None and len(method) == len(base) and method:
            scale = max(1.0, max(abs(float(b)) for b in base))
            return all(abs(float(m) - float(b)) <= tol * scale for m, b in zip(method, base))
    return False


def record_ablation(record: dict[str, Any], ablated: dict[str, Any], ablated_samples: dict[str, list[float]],
                    run_dir: str = "") -> None:
    """Add the ablated run's figures to a paper claim's ``record`` (in place)."""
    low, high = record.get("bounds", [-math.inf, math.inf])
    ci = tuple(ablated.get("ci95") or interval([float(v) for v in ablated.get("samples", [])]))
    record |= {"ablated_value": ablated["value"], "ablated_std": ablated["std"], "ablated_n": ablated.get("n"),
               "ablated_ci95": list(ci), "ablated_side": side(ci, low, high),
               "ablated_holds": bool(ablated["holds"]), "ablation_run_dir": run_dir,
               "ablation_equals_baseline": ablation_is_baseline(record, ablated, ablated_samples)}


def verdict(record: dict[str, Any]) -> str:
    """One phrase for a claim record, as the report shows it.

    Checks: ``pass`` / ``fail``. Paper claims, from the 95% intervals: ``not reproduced`` (the claim's interval
    on the wrong side of the threshold), ``inconclusive`` (across it, or the ablated interval across it),
    ``reproduced`` (on its side, and the ablated interval on the other), ``not falsified`` (both on the
    claim's side), ``holds (ablation = baseline)`` (the ablation is the baseline by identity: no evidence
    beyond the comparison), ``reproduced (ablation not run)``, ``ablation failed`` (the ablated run crashed).
    A claim whose ablation is paired inside the run (``ablation_in_run``) is ``reproduced`` when its interval
    lies on its side. ``not testable``: a claim it ``requires`` does not hold. A record without intervals (an
    older results.json) is judged on its mean.
    """
    if record.get("kind") == "check":
        if record.get("not_checked"):
            return "not checked at this tier"
        return "pass" if record["holds"] else "fail"
    if record.get("not_testable"):
        return "not testable"
    where = record.get("side") or ("holds" if record.get("holds") else "fails")
    if where in ("fails", "undefined"):
        return "not reproduced"
    if where == "straddles":
        return "inconclusive"
    if record.get("ablation_error"):
        return "ablation failed"
    if record.get("ablation_in_run"):
        return "reproduced"
    if "ablated_holds" not in record:
        return "reproduced (ablation not run)"
    if record.get("ablation_equals_baseline"):
        return "holds (ablation = baseline)"
    ablated = record.get("ablated_side") or ("holds" if record["ablated_holds"] else "fails")
    if ablated == "holds":
        return "not falsified"
    if ablated in ("fails", "undefined"):
        return "reproduced"
    return "inconclusive"


def interval_text(record: dict[str, Any], prefix: str = "") -> str:
    """``[lo, hi]`` of a record's (or, with ``prefix="ablated_"``, its ablated run's) 95% interval."""
    ci = record.get(f"{prefix}ci95")
    if not ci or any(v is None or math.isnan(v) for v in ci):
        return ""
    return f"[{ci[0]:.4g}, {ci[1]:.4g}]"
