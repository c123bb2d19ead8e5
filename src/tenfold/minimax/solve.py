"""One entry point for a user's own game: ``solve(game, method="papal", ...)``.

It runs PAPAL (Algorithm 1 of Ding et al., JMLR 2024) or a baseline (MFL-DA, WFR-DA) on any :class:`Game` or
plain payoff ``f(x, y)``, and returns a :class:`Solution`: both players' particles and weights, the NI error
and the regularized duality gap of the output, and a :class:`Trajectory` of diagnostics per (outer) step that
saves to JSON and plots with matplotlib (an optional import).

Measures (spec 1.7):
- NI error  NI(p, q) = max_y E_p f(., y) - min_x E_q f(x, .) >= 0, the duality gap of the *unregularized*
  game, zero exactly at its MNE (:func:`~tenfold.minimax.equilibrium.ni_error`: a search, so a lower bound).
- Regularized gap  Gap(p, q) = max_q' L(p, q') - min_p' L(p', q) = lam2 [KL(p || p^(q)) + KL(q || q^(p))] of
  L(p, q) = E_p E_q f + R(p) - R(q), zero exactly at the regularized MNE that PAPAL targets (Section 2).
  Particles have no density, so the gap is an *estimate*: a Gaussian kernel density of the (weighted)
  particles (Silverman's bandwidth) on a grid, then the closed form of
  :func:`~tenfold.minimax.equilibrium.regularized_gap`. It is computed for 1-D players only (a d-dimensional
  density estimate is not attempted) and is NaN otherwise; the smoothing adds a positive bias of order lam2
  times the KL between a density and its smoothed version, and the sampling noise about lam2 / (M h).

Device and dtype come from the initial particles ``x0`` (baselines) or ``device``/``dtype`` (default: the
generator's device, float64). Every particle operation is a tensor operation (no loop over particles).
"""

from __future__ import annotations

import inspect
import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from tenfold.errors import ConfigError, DataError, require
from tenfold.minimax.baselines import mfl_da, wfr_da
from tenfold.minimax.equilibrium import ni_error, regularized_gap
from tenfold.minimax.games import CallableGame, Game
from tenfold.minimax.papal import check_regularization, papal, sample_prior

METHODS = ("papal", "mfl-da", "wfr-da")
_FUNCTIONS = {"papal": papal, "mfl-da": mfl_da, "wfr-da": wfr_da}
# small-budget defaults (seconds on a CPU for a low-rank or 1-D game); every one can be overridden
DEFAULTS: dict[str, dict[str, Any]] = {
    "papal": dict(outer_steps=20, inner_steps=100, step=0.01),
    "mfl-da": dict(step=0.005, steps=2000),
    "wfr-da": dict(weight_step=0.5, position_step=0.05, steps=400),
}
# arguments solve() fills in itself (the user sets them through solve's own parameters)
_OWN = {"game", "x", "y", "lam1", "lam2", "particles", "generator", "dtype", "device", "callback", "every"}
TRAJECTORY_KEYS = ("step", "ni_error", "gap", "mean_x", "mean_y", "spread_x", "spread_y", "ess_x", "ess_y",
                   "seconds")


@dataclass
class Trajectory:
    """Diagnostics per recorded (outer) step, one list entry each (step 0: the initial particles).

    ``ni_error``: NI of that step's particles (a single iterate: biased upwards by M-particle sampling);
    ``gap``: the regularized gap estimate (NaN for players of dimension > 1); ``mean_x``/``mean_y``: the
    norm of the weighted mean; ``spread_x``/``spread_y``: the weighted root mean square distance to it;
    ``ess_x``/``ess_y``: the effective sample size 1 / sum w^2 of the weights; ``seconds``: the method's
    wall time so far, diagnostics excluded (a timing: machine-dependent). NaN where a value is not measured
    (``track_ni=False``, the meta device).
    """

    method: str
    unit: str  # "outer step" (PAPAL) or "step" (baselines)
    step: list[int] = field(default_factory=list)
    ni_error: list[float] = field(default_factory=list)
    gap: list[float] = field(default_factory=list)
    mean_x: list[float] = field(default_factory=list)
    mean_y: list[float] = field(default_factory=list)
    spread_x: list[float] = field(default_factory=list)
    spread_y: list[float] = field(default_factory=list)
    ess_x: list[float] = field(default_factory=list)
    ess_y: list[float] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON values; NaN becomes None (strict JSON has no NaN)."""
        out = asdict(self)
        for key in TRAJECTORY_KEYS:
            out[key] = [None if isinstance(v, float) and math.isnan(v) else v for v in out[key]]
        return out

    def save(self, path: str | Path) -> Path:
        """Write the trajectory as one JSON file (atomically); returns the path."""
        from tenfold.io import atomic_write_text

        return atomic_write_text(path, json.dumps(self.to_dict(), indent=1) + "\n")

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "trajectory") -> Trajectory:
        if not isinstance(data, dict) or not {"method", "unit", *TRAJECTORY_KEYS} <= set(data):
            missing = sorted({"method", "unit", *TRAJECTORY_KEYS} - set(data if isinstance(data, dict) else ()))
            raise DataError(f"{source} is not a saved trajectory: keys {missing} are missing")
        lengths = {key: len(data[key]) for key in TRAJECTORY_KEYS}
        if len(set(lengths.values())) != 1:
            raise DataError(f"{source} is not a saved trajectory: lists of different lengths {lengths}")
        values = {key: [float("nan") if v is None else float(v) for v in data[key]] for key in TRAJECTORY_KEYS}
        values["step"] = [int(v) for v in data["step"]]
        return cls(method=str(data["method"]), unit=str(data["unit"]), **values)

    @classmethod
    def load(cls, path: str | Path) -> Trajectory:
        path = Path(path)
        if not path.is_file():
            raise DataError(f"{path} does not exist: expected a JSON file written by Trajectory.save")
        try:
            data = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise DataError(f"{path} is not JSON: {exc}") from None
        return cls.from_dict(data, str(path))

    def plot(self, path: str | Path | None = None):
        """See :func:`plot_trajectory`."""
        return plot_trajectory(self, path)


def plot_trajectory(trajectory: Trajectory | str | Path, path: str | Path | None = None):
    """Two panels against the step: NI error and the regularized gap estimate (log scale), and the spread
    of both players. Returns the matplotlib figure; ``path``: also saved as PNG. Needs matplotlib (not a
    dependency of ``tenfold[minimax]``; ``pip install matplotlib``)."""
    if not isinstance(trajectory, Trajectory):
        trajectory = Trajectory.load(trajectory)
    try:
        import matplotlib
    except ImportError:
        raise ConfigError("plot_trajectory needs matplotlib: pip install matplotlib (the trajectory itself "
                          "saves without it)") from None
    if path is not None:
        matplotlib.use("Agg")  # a file is wanted: no screen needed
    import matplotlib.pyplot as plt

    t = trajectory
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.5))
    for name, values in (("NI error", t.ni_error), ("regularized gap (estimate)", t.gap)):
        pairs = [(s, v) for s, v in zip(t.step, values) if v is not None and math.isfinite(v) and v > 0]
        if pairs:
            ax1.semilogy(*zip(*pairs), marker=".", label=name)
    ax1.set_xlabel(t.unit)
    ax1.set_title(f"{t.method}: distance to equilibrium")
    ax1.legend()
    ax2.plot(t.step, t.spread_x, marker=".", label="spread x")
    ax2.plot(t.step, t.spread_y, marker=".", label="spread y")
    ax2.set_xlabel(t.unit)
    ax2.legend()
    if path is not None:
        import io

        from tenfold.io import atomic_write_bytes

        buf = io.BytesIO()
        fig.tight_layout()
        fig.savefig(buf, format="png", dpi=110)
        atomic_write_bytes(path, buf.getvalue())
    return fig


@dataclass
class Solution:
    """The output measure of ``solve``: particles x (M, dim_x), y (N, dim_y) with weights wx, wy (summing to
    one), its NI error and regularized gap estimate (floats; 0-d tensors on the meta device), the trajectory,
    and the options of the run (``raw``: the method's own result, e.g. a PapalResult with every iterate)."""

    x: torch.Tensor
    y: torch.Tensor
    wx: torch.Tensor
    wy: torch.Tensor
    ni_error: float
    gap: float
    trajectory: Trajectory
    method: str
    options: dict[str, Any]
    raw: Any = None

    def save(self, path: str | Path) -> Path:
        """The trajectory as JSON (see :meth:`Trajectory.save`): what a plot needs."""
        return self.trajectory.save(path)


def _resolve_game(game: Game | Callable, dims: tuple[int, int] | None) -> Game:
    if isinstance(game, Game):
        require(dims is None or tuple(dims) == (game.dim_x, game.dim_y), "dims", dims,
                f"({game.dim_x}, {game.dim_y}) as the game's dim_x, dim_y (or leave it out)")
        return game
    require(callable(game), "game", type(game).__name__, "a tenfold.minimax.Game or a payoff f(x, y)")
    dims = (1, 1) if dims is None else tuple(dims)
    require(len(dims) == 2, "dims", dims, "(dim_x, dim_y)")
    return CallableGame(game, *dims)


def _check_particles(name: str, z: torch.Tensor | None, dim: int) -> None:
    if z is None:
        return
    require(isinstance(z, torch.Tensor) and z.ndim == 2 and z.shape[1] == dim and len(z) >= 1, name,
            tuple(z.shape) if isinstance(z, torch.Tensor) else type(z).__name__, f"a (particles, {dim}) tensor")
    require(z.is_floating_point(), name, z.dtype, "a floating-point tensor")
    if z.device.type != "meta" and not torch.isfinite(z).all():
        raise ConfigError(f"{name} is invalid: it holds non-finite positions (first at row "
                          f"{int((~torch.isfinite(z)).any(1).nonzero()[0])})")


def _check_payoff(game: Game, x: torch.Tensor, y: torch.Tensor) -> None:
    """f on a few particle pairs: an (M, N) finite matrix, else a one-line error naming the value."""
    values = game.payoff(x[:64], y[:64])
    require(isinstance(values, torch.Tensor) and values.shape == (len(x[:64]), len(y[:64])), "payoff",
            tuple(getattr(values, "shape", ())), f"an ({len(x[:64])}, {len(y[:64])}) matrix f(x_i, y_j)")
    if values.device.type != "meta" and not torch.isfinite(values).all():
        i, j = (int(k) for k in (~torch.isfinite(values)).nonzero()[0])
        raise ConfigError(f"payoff f(x, y)={float(values[i, j])} is invalid at x={x[i].tolist()}, "
                          f"y={y[j].tolist()}: expected finite values (PAPAL assumes |f| <= 1)")


def _number(value) -> float:
    if isinstance(value, torch.Tensor):
        return float("nan") if value.device.type == "meta" else float(value)
    return float(value)


class _GapEstimator:
    """Kernel density estimate of 1-D particles on a fixed grid, then the closed-form regularized gap."""

    def __init__(self, game: Game, lam1: float, lam2: float, like: torch.Tensor, box: float, points: int):
        self.game, self.lam1, self.lam2, self.torus = game, lam1, lam2, game.torus
        lo, hi = (0.0, 1.0) if self.torus else (-box, box)
        self.grid = torch.linspace(lo, hi, points + (1 if self.torus else 0), dtype=like.dtype,
                                   device=like.device)[:points]
        self.F = game.payoff(self.grid[:, None], self.grid[:, None])

    def density(self, z: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        """Binned KDE (O(M + G W), not O(M G)): the weights split linearly between the two nearest grid
        points (points beyond the grid go to its ends; on the torus the grid wraps), then a convolution with
        the Gaussian kernel of bandwidth h = 1.06 sd n_eff^(-1/5) (Silverman), at least one cell."""
        z = z[:, 0]
        mean = w @ z
        std = float((w @ (z - mean).square()).sqrt())
        n_eff = float(1 / w.square().sum())
        g = len(self.grid)
        cell = float(self.grid[1] - self.grid[0])
        h = max(1.06 * std * n_eff ** (-0.2), cell)
        pos = (z - self.grid[0]) / cell
        if self.torus:
            pos = torch.remainder(pos, g)
        else:
            pos = pos.clamp(0, g - 1)
        low = pos.floor().clamp(max=g - 1)
        frac = pos - low
        low = low.long()
        high = (low + 1) % g if self.torus else (low + 1).clamp(max=g - 1)
        mass = torch.zeros(g, dtype=w.dtype, device=w.device)
        mass.index_add_(0, low, w * (1 - frac)).index_add_(0, high, w * frac)
        half = min(int(math.ceil(4 * h / cell)), g - 1)
        offsets = torch.arange(-half, half + 1, dtype=w.dtype, device=w.device) * cell
        kernel = torch.exp(-0.5 * (offsets / h).square())
        padded = mass[None, None]
        if self.torus:  # circular padding (at most one full turn of the grid each side)
            padded = torch.cat([mass[g - half:], mass, mass[:half]])[None, None] if half else padded
        else:
            padded = torch.nn.functional.pad(padded, (half, half))
        smooth = torch.nn.functional.conv1d(padded, kernel[None, None])[0, 0]
        return smooth / smooth.sum()

    def __call__(self, x, y, wx, wy) -> float:
        a, b = self.density(x, wx), self.density(y, wy)
        return regularized_gap(self.F, a, b, self.grid, self.grid, lam1=self.lam1, lam2=self.lam2, torus=self.torus)


def _weighted_stats(z: torch.Tensor, w: torch.Tensor) -> tuple[float, float, float]:
    mean = w @ z
    spread = (w @ (z - mean).square().sum(1)).sqrt()
    return _number(mean.norm()), _number(spread), _number(1 / w.square().sum())


def solve(game: Game | Callable[[torch.Tensor, torch.Tensor], torch.Tensor], method: str = "papal", *,
          particles: int | None = None, lam1: float = 0.05, lam2: float = 0.1, dims: tuple[int, int] | None = None,
          x0: torch.Tensor | None = None, y0: torch.Tensor | None = None, device: torch.device | str | None = None,
          dtype: torch.dtype | None = None, seed: int = 0, generator: torch.Generator | None = None,
          average: int | None = None, every: int | None = None, track_ni: bool = True,
          ni_options: dict[str, Any] | None = None, gap_box: float | None = None, gap_points: int = 801,
          **options) -> Solution:
    """Approximate a mixed Nash equilibrium of min_x max_y f(x, y) for your own game.

    ``game``: a :class:`Game` or a payoff ``f(x, y)`` (wrapped in :class:`CallableGame` with ``dims`` =
    (dim_x, dim_y), default (1, 1)); f should lie in [-1, 1] (PAPAL's constants assume it).
    ``method``: "papal" (targets the entropy-regularized MNE of L(p, q) = E_p E_q f + R(p) - R(q),
    R(p) = E_p[lam1 |x|^2 + lam2 log p]; Algorithm 1), "mfl-da" (mean-field Langevin descent-ascent, the same
    target) or "wfr-da" (conic particle mirror-prox, no entropy: heads for the unregularized MNE).
    ``particles``: M per player (default 100, or
    the number of initial particles). ``options``: the method's own arguments (``papal``: outer_steps, inner_steps, step, sampler, inner, ...;
    ``mfl_da``: step, steps, ratio, y_steps; ``wfr_da``: weight_step, position_step, steps), over
    :data:`DEFAULTS`. ``x0``, ``y0``: initial particles of the baselines (default: prior draws; PAPAL draws
    from the prior pi = N(0, lam2/(2 lam1) I) at every outer step, so it takes none); they also set the
    device and dtype. ``average``: PAPAL's output is the gamma-weighted mixture (gamma_t = mu^(-t)) of the
    last ``average`` iterates, the measure Corollary 9 bounds (default min(10, ceil(outer_steps / 2)); 1 is
    Option I, the last pair). ``every``: record the trajectory every so many (outer) steps (default: every outer step
    for PAPAL, steps // 20 for the baselines). ``track_ni=False`` skips the per-step NI (the costly
    diagnostic; the final NI is always computed). ``ni_options``: passed to ``ni_error`` (box, grid_step,
    starts, iters, ...). ``gap_box``, ``gap_points``: the grid [-gap_box, gap_box] of the 1-D gap estimate
    (default half-width: six prior standard deviations, at least 7).
    """
    require(method in METHODS, "method", method, f"one of {METHODS}")
    game = _resolve_game(game, dims)
    check_regularization(lam1, lam2, game.torus)
    fn = _FUNCTIONS[method]
    allowed = set(inspect.signature(fn).parameters) - _OWN
    unknown = sorted(set(options) - allowed)
    require(not unknown, "options", unknown, f"arguments of {fn.__name__}: {sorted(allowed)}")
    opts = {**DEFAULTS[method], **options}
    if method == "papal":
        require(x0 is None and y0 is None, "x0", "given", "none for PAPAL (it draws from the prior at every outer "
                "step); set device, dtype and particles instead")
    _check_particles("x0", x0, game.dim_x)
    _check_particles("y0", y0, game.dim_y)
    if x0 is not None and y0 is not None:
        require(x0.device == y0.device and x0.dtype == y0.dtype, "y0", f"{y0.dtype} on {y0.device}",
                f"the dtype and device of x0 ({x0.dtype} on {x0.device})")
    first = x0 if x0 is not None else y0
    for name, z in (("x0", x0), ("y0", y0)):
        require(particles is None or z is None or len(z) == particles, "particles", particles,
                f"len({name}) = {len(z) if z is not None else 0} or left out (the initial particles set it)")
    particles = (len(first) if first is not None else 100) if particles is None else particles
    require(isinstance(particles, int) and not isinstance(particles, bool) and particles >= 1, "particles",
            particles, "a positive integer")
    if device is None:
        device = first.device if first is not None else (generator.device if generator is not None else "cpu")
    device = torch.device(device)
    dtype = dtype or (first.dtype if first is not None else torch.float64)
    require(dtype.is_floating_point, "dtype", dtype, "a floating-point dtype")
    meta = device.type == "meta"
    if generator is None:
        generator = torch.Generator(device="cpu" if meta else device).manual_seed(seed)
    if x0 is not None:
        require(x0.device == device and x0.dtype == dtype, "x0", f"{x0.dtype} on {x0.device}",
                f"{dtype} on {device} (the device and dtype asked for)")
    outer = opts.get("outer_steps", opts.get("steps"))
    require(isinstance(outer, int) and outer >= 1, "steps", outer, "a positive integer number of steps")
    if average is None:
        average = min(10, math.ceil(outer / 2)) if method == "papal" else 1  # the early half is far off
    require(isinstance(average, int) and 1 <= average <= (outer if method == "papal" else 1), "average", average,
            f"between 1 and {outer} iterates for PAPAL (1 for {method})")
    every = every if every is not None else (1 if method == "papal" else max(1, outer // 20))
    require(isinstance(every, int) and every >= 1, "every", every, "a positive integer number of steps")

    def prior(dim: int) -> torch.Tensor:
        return sample_prior(particles, dim, lam1, lam2, game.torus, generator, dtype, device)

    if method != "papal":
        x0 = prior(game.dim_x) if x0 is None else x0
        y0 = prior(game.dim_y) if y0 is None else y0
        _check_payoff(game, x0, y0)
    else:
        probe = torch.Generator(device="cpu" if meta else device).manual_seed(seed + 1)
        _check_payoff(game, *(sample_prior(min(particles, 64), d, lam1, lam2, game.torus, probe, dtype, device)
                              for d in (game.dim_x, game.dim_y)))

    ni_kw = dict(ni_options or {})
    like = torch.empty(0, dtype=dtype, device=device)
    if gap_box is None:  # six prior standard deviations, at least the NI search's box
        gap_box = max(7.0, 6 * math.sqrt(lam2 / (2 * lam1))) if lam1 > 0 else 7.0
    require(gap_box > 0 and isinstance(gap_points, int) and gap_points >= 2, "gap grid", (gap_box, gap_points),
            "a positive half-width and >= 2 points")
    gap_of = (_GapEstimator(game, lam1, lam2, like, gap_box, gap_points)
              if game.dim_x == 1 and game.dim_y == 1 and not meta else None)
    traj = Trajectory(method=method, unit="outer step" if method == "papal" else "step")
    spent = [0.0]  # seconds taken by the diagnostics, subtracted from the method's wall time
    start = time.perf_counter()

    def record(t: int, x, y, wx, wy) -> None:
        begin = time.perf_counter()
        traj.step.append(int(t))
        traj.ni_error.append(_number(ni_error(game, x, y, wx, wy, **ni_kw)) if track_ni and not meta
                             else float("nan"))
        traj.gap.append(_number(gap_of(x, y, wx, wy)) if gap_of is not None else float("nan"))
        for name, z, w in (("x", x, wx), ("y", y, wy)):
            mean, spread, ess = _weighted_stats(z, w) if not meta else (float("nan"),) * 3
            getattr(traj, f"mean_{name}").append(mean)
            getattr(traj, f"spread_{name}").append(spread)
            getattr(traj, f"ess_{name}").append(ess)
        traj.seconds.append(begin - start - spent[0])
        spent[0] += time.perf_counter() - begin

    def callback(t: int, x, y, wx, wy) -> None:  # the baselines call it every ``every`` steps themselves
        if method != "papal" or t % every == 0 or t == outer:
            record(t, x, y, wx, wy)

    common = dict(generator=generator) if method != "wfr-da" else {}
    if method == "papal":
        raw = papal(game, lam1=lam1, lam2=lam2, particles=particles, dtype=dtype, device=device,
                    callback=callback, **common, **opts)
        out = raw.mixture(average) if average > 1 else (raw.x, raw.y, raw.wx, raw.wy)
        x0_, y0_, wx0, wy0 = raw.iterate(0)
    else:
        wx0 = torch.full((len(x0),), 1 / len(x0), dtype=dtype, device=device)
        wy0 = torch.full((len(y0),), 1 / len(y0), dtype=dtype, device=device)
        x0_, y0_ = x0, y0
        if method == "mfl-da":
            raw = mfl_da(game, x0, y0, lam1=lam1, lam2=lam2, every=every, callback=callback, **common, **opts)
            out = (*raw, torch.full((len(x0),), 1 / len(x0), dtype=dtype, device=device),
                   torch.full((len(y0),), 1 / len(y0), dtype=dtype, device=device))
        else:
            raw = wfr_da(game, x0, y0, every=every, callback=callback, **opts)
            out = raw
    # step 0 is recorded after the run (PAPAL's X(0), Y(0) exist only inside it); its time is 0
    seconds = traj.seconds[:]
    record(0, x0_, y0_, wx0, wy0)
    traj.seconds = [0.0] + seconds
    order = sorted(range(len(traj.step)), key=lambda i: traj.step[i])
    for key in TRAJECTORY_KEYS:
        if key != "seconds":
            setattr(traj, key, [getattr(traj, key)[i] for i in order])
    x, y, wx, wy = out
    final_ni = ni_error(game, x, y, wx, wy, **ni_kw)
    final_gap = gap_of(x, y, wx, wy) if gap_of is not None else float("nan")
    return Solution(x=x, y=y, wx=wx, wy=wy, ni_error=final_ni if meta else float(final_ni),
                    gap=float(final_gap), trajectory=traj, method=method,
                    options=dict(particles=particles, lam1=lam1, lam2=lam2, average=average, every=every,
                                 dtype=str(dtype), device=str(device), seed=seed, **opts),
                    raw=raw)
