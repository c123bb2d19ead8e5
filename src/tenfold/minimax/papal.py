"""PAPAL (Ding, Dong, Fang, Lin, Zhang; JMLR 2024, first named PPDA): a particle primal-dual algorithm for
the entropy-regularized mixed Nash equilibrium  min_p max_q E_p E_q f + R(p) - R(q),
R(p) = E_p[lam1 |x|^2 + lam2 log p] = lam2 KL(p || pi) + const, prior pi = N(0, lam2/(2 lam1) I).

Outer loop (Section 3, Lemma 3; spec 1.2). mu solves mu^2 - (2 + lam2^2) mu + 1 = 0 (mu ~ 1 - lam2):
  h^(t) = mu h^(t-1) + (1 - mu)(phi_t + lam1 |y|^2)/lam2,
          phi_t = -(1 + mu) E_{p_{t-1}} f(., y) + mu E_{p_{t-2}} f(., y),
  g^(t) = mu g^(t-1) + (1 - mu)(psi_t + lam1 |x|^2)/lam2,  psi_t = E_{q_t} f(x, .),
  q_t ∝ exp(-h^(t)), p_t ∝ exp(-g^(t)),  h^(0) = lam1/lam2 |y|^2, g^(0) = lam1/lam2 |x|^2:
a Gibbs response to an exponentially weighted, optimistic average of the opponent's past play.
:func:`exact_outer_loop` runs it in closed form on a grid; :func:`papal` (Algorithm 1) samples each
Gibbs target with M particles by ULA (or MALA, Algorithm 2) started fresh from the prior.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from tenfold.errors import ConvergenceError, require
from tenfold.minimax.games import Game, LowRankGame


def check_regularization(lam1: float, lam2: float, torus: bool = False) -> None:
    require(lam2 > 0, "lam2", lam2, "a positive entropy weight")
    require(lam1 >= 0, "lam1", lam1, "a non-negative quadratic weight")
    require(torus or lam1 > 0, "lam1", lam1, "a positive quadratic weight (lam1 = 0 only on the torus)")


def confinement(z: torch.Tensor, torus: bool = False) -> torch.Tensor:
    """V(z) of R(p) = E_p[lam1 V + lam2 log p], per row: |z|^2 on R^d; on the torus [0, 1)^d (our extension)
    the periodic V = sum_k (1 - cos 2 pi z_k)/(2 pi^2), which equals |z|^2 to second order at 0."""
    if torus:
        return ((1 - torch.cos((2 * math.pi) * z)) / (2 * math.pi**2)).sum(-1)
    return z.square().sum(-1)


def confinement_grad(z: torch.Tensor, torus: bool = False) -> torch.Tensor:
    """grad V(z): 2 z on R^d, sin(2 pi z)/pi on the torus."""
    return torch.sin((2 * math.pi) * z) / math.pi if torus else 2 * z


def _on_meta(t: torch.Tensor) -> bool:
    """Meta tensors carry shapes and dtypes but no values: value checks are skipped there."""
    return t.device.type == "meta"


def momentum(lam2: float) -> float:
    """mu = (2 + lam2^2 - lam2 sqrt(4 + lam2^2)) / 2, the root in (0, 1) of mu^2 - (2 + lam2^2) mu + 1."""
    require(lam2 > 0, "lam2", lam2, "a positive entropy weight")
    return (2 + lam2**2 - lam2 * math.sqrt(4 + lam2**2)) / 2


def _gibbs(potential: torch.Tensor) -> torch.Tensor:
    return torch.softmax(-potential, dim=0)


@dataclass
class GridHistory:
    """The exact outer loop's densities a_t (x grid) and b_t (y grid) for t = 0..steps."""

    a: list[torch.Tensor] = field(default_factory=list)
    b: list[torch.Tensor] = field(default_factory=list)


def exact_outer_loop(F: torch.Tensor, xs: torch.Tensor, ys: torch.Tensor, *, lam1: float, lam2: float,
                     steps: int, extrapolation: float = 1.0, torus: bool = False) -> GridHistory:
    """The outer loop of spec 1.2 with closed-form Gibbs steps on grids ``xs`` (rows of F), ``ys`` (columns).

    Probability vectors on the grid points (1-D grids, or (points, d) grids of the product space); the
    potentials are exact, only space is discretized. ``extrapolation`` scales the optimistic term:
    phi_t = -(1 + e mu) E_{p_{t-1}} f + e mu E_{p_{t-2}} f; e = 0 removes it (an ablation, not the paper's
    method). ``torus``: the periodic confinement of :func:`confinement` instead of |x|^2.
    """
    check_regularization(lam1, lam2, torus)
    require(steps >= 1, "steps", steps, "a positive number of outer steps")
    require(F.shape == (len(xs), len(ys)), "F", tuple(F.shape), f"a ({len(xs)}, {len(ys)}) payoff matrix")
    mu = momentum(lam2)
    vx = confinement(xs.reshape(len(xs), -1), torus)
    vy = confinement(ys.reshape(len(ys), -1), torus)
    g = lam1 / lam2 * vx
    h = lam1 / lam2 * vy
    hist = GridHistory(a=[_gibbs(g)], b=[_gibbs(h)])
    a_prev = hist.a[0]
    e = float(extrapolation)
    for _ in range(steps):
        a_now = hist.a[-1]
        phi = -(1 + e * mu) * (a_now @ F) + e * mu * (a_prev @ F)
        h = mu * h + (1 - mu) * (phi + lam1 * vy) / lam2
        b = _gibbs(h)
        g = mu * g + (1 - mu) * (F @ b + lam1 * vx) / lam2
        a_prev = a_now
        hist.a.append(_gibbs(g))
        hist.b.append(b)
    return hist


class OpponentAverage:
    """The potential's opponent term  sum_s c_s mean_r f(z_r^(s), .)  seen from one player.

    ``side="y"``: the potential of y built from past x sets (f(x_r, y)); ``side="x"``: of x from y sets.
    Low-rank games keep one feature vector (exact EMA, any age); otherwise a pool of past sets whose
    coefficients decay by mu per step, dropped once older than ``horizon`` steps (spec 1.3).
    ``batch`` (stochastic potentials, spec 1.3 "minibatch f = E G"): each gradient uses a uniformly drawn
    minibatch of ``batch`` opponent particles per pool set (``generator`` draws it), an unbiased estimate of
    the exact gradient; with the low-rank path the feature means of a set are taken over such a minibatch.
    """

    def __init__(self, game: Game, side: str, horizon: int, low_rank: bool, batch: int | None = None,
                 generator: torch.Generator | None = None):
        require(side in ("x", "y"), "side", side, "'x' or 'y'")
        require(horizon >= 1, "horizon", horizon, "a positive pool age")
        require(not low_rank or isinstance(game, LowRankGame), "low_rank", low_rank,
                "False for a game without low-rank features")
        require(batch is None or (isinstance(batch, int) and batch >= 1), "batch", batch,
                "None (exact potentials) or a positive minibatch size")
        require(batch is None or generator is not None, "generator", generator, "a generator for the minibatches")
        self.game, self.side, self.horizon, self.low_rank = game, side, horizon, low_rank
        self.batch, self.generator = batch, generator
        self.features: torch.Tensor | None = None
        self._coef = None
        self.pool: list[list] = []  # [particles, coefficient, age, weights]

    def _set_coef(self) -> None:
        # python floats on the CPU: no tensor reads inside the Langevin loop; a tensor elsewhere (no syncs)
        self._coef = self.features.tolist() if self.features.device.type == "cpu" else self.features

    def decay(self, mu: float) -> None:
        if self.features is not None:
            self.features = mu * self.features
            self._set_coef()
        for entry in self.pool:
            entry[1] *= mu
            entry[2] += 1
        self.pool = [e for e in self.pool if e[2] <= self.horizon]

    def _minibatch(self, particles: torch.Tensor, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``batch`` particles drawn with probabilities w (with replacement), equal weights: unbiased."""
        idx = torch.multinomial(w, self.batch, replacement=True, generator=self.generator)
        return particles[idx], torch.full((self.batch,), 1.0 / self.batch, dtype=w.dtype, device=w.device)

    def add(self, particles: torch.Tensor, coef: float, weights: torch.Tensor | None = None) -> None:
        w = _uniform_weights(particles) if weights is None else weights
        if self.low_rank:
            if self.batch is not None:
                particles, w = self._minibatch(particles, w)
            feats = self.game.u(particles) if self.side == "y" else self.game.v(particles)
            contribution = coef * (w @ feats)
            self.features = contribution if self.features is None else self.features + contribution
            self._set_coef()
        else:
            for entry in self.pool:  # X(t-1) was added last step as X(t): accumulate, do not duplicate
                if entry[0] is particles and entry[3] is w:
                    entry[1] += coef
                    return
            self.pool.append([particles, coef, 0, w])

    def _stacked(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self.batch is None:
            return (torch.cat([e[0] for e in self.pool]), torch.cat([e[1] * e[3] for e in self.pool]))
        sets = [self._minibatch(e[0], e[3]) for e in self.pool]
        return (torch.cat([z for z, _ in sets]), torch.cat([e[1] * w for e, (_, w) in zip(self.pool, sets)]))

    def value(self, z: torch.Tensor) -> torch.Tensor:
        if self.low_rank:
            if self.features is None:
                return z.new_zeros(len(z))
            feats = self.game.v(z) if self.side == "y" else self.game.u(z)
            return feats @ self.features
        if not self.pool:
            return z.new_zeros(len(z))
        opp, w = self._stacked()
        return w @ self.game.payoff(opp, z) if self.side == "y" else self.game.payoff(z, opp) @ w

    def grad(self, z: torch.Tensor) -> torch.Tensor:
        if self.low_rank:
            if self.features is None:
                return torch.zeros_like(z)
            return (self.game.v_grad_dot if self.side == "y" else self.game.u_grad_dot)(z, self._coef)
        if not self.pool:
            return torch.zeros_like(z)
        opp, w = self._stacked()
        return self.game.grad_y(opp, z, w) if self.side == "y" else self.game.grad_x(z, opp, w)


def _uniform_weights(z: torch.Tensor) -> torch.Tensor:
    return torch.full((len(z),), 1.0 / len(z), dtype=z.dtype, device=z.device)


def sample_prior(n: int, dim: int, lam1: float, lam2: float, torus: bool, generator: torch.Generator,
                 dtype: torch.dtype = torch.float64, device: torch.device | str | None = None) -> torch.Tensor:
    """pi = N(0, lam2/(2 lam1) I); on the torus uniform on [0, 1)^dim (exactly the prior for lam1 = 0; for
    lam1 > 0 the start of the inner loop, whose target includes the periodic confinement).

    ``device`` defaults to the generator's device (the meta device takes a CPU generator).
    """
    device = generator.device if device is None else torch.device(device)
    if torus:
        return torch.rand(n, dim, generator=generator, dtype=dtype, device=device)
    return math.sqrt(lam2 / (2 * lam1)) * torch.randn(n, dim, generator=generator, dtype=dtype, device=device)


def langevin(z: torch.Tensor, potential: Callable[[torch.Tensor], torch.Tensor],
             grad: Callable[[torch.Tensor], torch.Tensor], *, step: float, steps: int, generator: torch.Generator,
             sampler: str = "ula", torus: bool = False) -> torch.Tensor:
    """ULA  z <- z - step grad U(z) + sqrt(2 step) xi, or MALA (Metropolis-adjusted, Algorithm 2).

    On the torus positions wrap into [0, 1) (our extension; MALA is not offered there). Noise is drawn by
    ``generator`` on z's device and in z's dtype.
    """
    require(step > 0, "step", step, "a positive Langevin step size")
    require(steps >= 0, "steps", steps, "a non-negative number of Langevin steps")
    require(sampler in ("ula", "mala"), "sampler", sampler, "'ula' or 'mala'")
    require(not (torus and sampler == "mala"), "sampler", sampler, "'ula' on the torus")
    noise_scale = math.sqrt(2 * step)
    g = grad(z) if steps else None
    u = potential(z) if sampler == "mala" and steps else None
    chunk = max(1, min(steps, 2**22 // max(z.numel(), 1)))  # draw noise for many steps at once
    for k in range(steps):
        if k % chunk == 0:
            block = torch.randn((min(chunk, steps - k), *z.shape), generator=generator, dtype=z.dtype,
                                device=z.device)
        noise = block[k % chunk]
        if sampler == "ula":
            z = z.add(g, alpha=-step).add_(noise, alpha=noise_scale)
            if torus:
                z = torch.remainder(z, 1.0)
            g = grad(z)
            continue
        proposal = z - step * g + noise_scale * noise
        g_new, u_new = grad(proposal), potential(proposal)
        forward = noise.square().sum(1) / 2  # |z' - z + step g(z)|^2 / (4 step)
        backward = (z - proposal + step * g_new).square().sum(1) / (4 * step)
        log_accept = u - u_new + forward - backward
        accept = torch.log(torch.rand(len(z), generator=generator, dtype=z.dtype, device=z.device)) < log_accept
        z = torch.where(accept[:, None], proposal, z)
        g = torch.where(accept[:, None], g_new, g)
        u = torch.where(accept, u_new, u)
    return z


def proximal_sampler(z: torch.Tensor, potential: Callable[[torch.Tensor], torch.Tensor],
                     grad: Callable[[torch.Tensor], torch.Tensor], *, eta: float, steps: int, inner_steps: int,
                     inner_step: float, generator: torch.Generator) -> torch.Tensor:
    """The proximal sampler (Algorithm 3; Lee, Shen and Tian 2021) for pi ∝ exp(-U) with MALA inside.

    Each of ``steps`` outer iterations: (forward) w = z + sqrt(eta) xi; (backward) sample the restricted
    Gaussian oracle  z ~ exp(-U(z) - |z - w|^2/(2 eta))  by ``inner_steps`` MALA steps of size ``inner_step``
    started at the current z. The pair (z, w) is a Gibbs sampler of exp(-U(z) - |z - w|^2/(2 eta)), whose
    z-marginal is pi; with an exact backward step it converges for any eta (at rate 1/(1 + alpha eta) per step
    under an LSI with constant alpha).
    """
    require(eta > 0, "eta", eta, "a positive proximal step")
    require(steps >= 0 and inner_steps >= 1, "steps", (steps, inner_steps), "a non-negative number of proximal "
            "steps and a positive number of MALA steps per step")
    for _ in range(steps):
        w = z + math.sqrt(eta) * torch.randn(z.shape, generator=generator, dtype=z.dtype, device=z.device)
        z = langevin(z, lambda v, w=w: potential(v) + (v - w).square().sum(1) / (2 * eta),
                     lambda v, w=w: grad(v).add_(v - w, alpha=1 / eta), step=inner_step, steps=inner_steps,
                     generator=generator, sampler="mala")
    return z


@dataclass
class PapalResult:
    """Final particle sets (Option I: the last pair; Option II: a random iterate with P(t) ∝ mu^(-t))
    and every outer iterate X(t), Y(t) for t = 0..T, with their particle weights (uniform 1/M except for
    the weights-only ablation ``inner="weights"``)."""

    x: torch.Tensor
    y: torch.Tensor
    xs: list[torch.Tensor]
    ys: list[torch.Tensor]
    chosen_step: int
    mu: float = 1.0
    wxs: list[torch.Tensor] = field(default_factory=list)
    wys: list[torch.Tensor] = field(default_factory=list)

    @property
    def wx(self) -> torch.Tensor:
        return self.wxs[self.chosen_step] if self.wxs else _uniform_weights(self.x)

    @property
    def wy(self) -> torch.Tensor:
        return self.wys[self.chosen_step] if self.wys else _uniform_weights(self.y)

    def iterate(self, t: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(X(t), Y(t), wx, wy)."""
        wx = self.wxs[t] if self.wxs else _uniform_weights(self.xs[t])
        wy = self.wys[t] if self.wys else _uniform_weights(self.ys[t])
        return self.xs[t], self.ys[t], wx, wy

    def mixture(self, last: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """The gamma-weighted mixture (gamma_t = mu^(-t), the measure the theorem bounds) of the last
        ``last`` iterates: (x, y, wx, wy) with particle weights summing to one."""
        require(1 <= last <= len(self.xs) - 1, "last", last, f"between 1 and {len(self.xs) - 1} iterates")
        steps = range(len(self.xs) - last, len(self.xs))
        gamma = torch.tensor([self.mu ** (-(s - steps[0])) for s in steps], dtype=self.x.dtype,
                             device=self.x.device)
        gamma = gamma / gamma.sum()
        parts = [self.iterate(s) for s in steps]
        x = torch.cat([p[0] for p in parts])
        y = torch.cat([p[1] for p in parts])
        wx = torch.cat([g * p[2] for g, p in zip(gamma, parts)])
        wy = torch.cat([g * p[3] for g, p in zip(gamma, parts)])
        return x, y, wx, wy


INNER_LOOPS = ("langevin", "weights", "proximal", "exact")


def papal(game: Game, *, lam1: float, lam2: float, particles: int, outer_steps: int, inner_steps: int,
          step: float, generator: torch.Generator, sampler: str = "ula", low_rank: bool | None = None,
          horizon: int | None = None, output: str = "last", dtype: torch.dtype = torch.float64,
          device: torch.device | str | None = None, extrapolation: float = 1.0, inner: str = "langevin",
          batch: int | None = None, proximal_eta: float = 0.05, proximal_inner: int = 5,
          grid: torch.Tensor | None = None, callback: Callable[..., None] | None = None) -> PapalResult:
    """Algorithm 1 of the paper (spec 1.3) with M = ``particles`` per player.

    Each outer step t: (1) decay the pools by mu and add X(t) with -(1 + e mu)(1-mu)/lam2 and X(t-1) with
    e (1-mu) mu/lam2 to y's potential (e = ``extrapolation``, 1 in the paper; 0 removes the optimistic term,
    an ablation); (2) draw Y from the prior, run the inner loop on h^(t+1)(y) = (lam1/lam2) V(y) + pool;
    (3) add Y(t+1) with (1-mu)/lam2 to x's potential and do the same for X.

    ``inner``: "langevin" (``inner_steps`` ULA or MALA steps of size ``step``, Algorithms 1-2), "proximal"
    (Algorithm 3: ``inner_steps`` proximal-sampler steps with proximal step ``proximal_eta``, each backward
    step by ``proximal_inner`` MALA steps of size ``step``), or "weights" (an ablation: no particle movement;
    the M prior draws X(0), Y(0) stay put and carry the self-normalized importance weights
    p*_t/pi ∝ exp(-pool), so PAPAL becomes a weight-only method), or "exact" (1-D players only: M i.i.d. draws
    from the Gibbs target exp(-h^(t)) discretized on the equally spaced ``grid``, each jittered uniformly within
    its cell: the exact outer loop fed with M-particle potentials, i.e. PAPAL without inner-loop bias, whose
    spread is the sampling noise the potentials feed back). ``batch``: stochastic potentials
    (minibatches of the opponent's particles, see :class:`OpponentAverage`).
    ``low_rank`` (default: whenever the game is a LowRankGame) keeps feature means instead of pools.
    ``horizon`` (default ceil(10/lam2)) prunes pool sets by age. ``device`` (default: the generator's)
    and ``dtype`` place every tensor. ``callback(t, X, Y, wx, wy)`` after each step.
    """
    check_regularization(lam1, lam2, game.torus)
    require(isinstance(particles, int) and particles >= 1, "M", particles, "an integer number of particles >= 1")
    require(outer_steps >= 1, "outer_steps", outer_steps, "a positive number of outer steps")
    require(inner in INNER_LOOPS, "inner", inner, f"one of {INNER_LOOPS}")
    require(inner_steps >= 1 or inner == "weights", "inner_steps", inner_steps, "a positive number of inner steps")
    require(step > 0, "step", step, "a positive Langevin step size")
    require(output in ("last", "random"), "output", output, "'last' (Option I) or 'random' (Option II)")
    require(sampler in ("ula", "mala"), "sampler", sampler, "'ula' or 'mala'")
    require(extrapolation >= 0, "extrapolation", extrapolation, "a non-negative weight of the optimistic term")
    require(inner != "exact" or (grid is not None and grid.ndim == 1 and len(grid) >= 2 and game.dim_x == 1
                                 and game.dim_y == 1), "grid", None if grid is None else tuple(grid.shape),
            "an equally spaced 1-D grid of >= 2 points for inner='exact' (1-D players only)")
    low_rank = isinstance(game, LowRankGame) if low_rank is None else low_rank
    horizon = horizon or math.ceil(10 / lam2)
    device = generator.device if device is None else torch.device(device)
    mu = momentum(lam2)
    e = float(extrapolation)
    quad = lam1 / lam2
    torus = game.torus
    y_pot = OpponentAverage(game, "y", horizon, low_rank, batch, generator)
    x_pot = OpponentAverage(game, "x", horizon, low_rank, batch, generator)
    meta = device.type == "meta"

    def prior(dim: int) -> torch.Tensor:
        return sample_prior(particles, dim, lam1, lam2, torus, generator, dtype, device)

    def potential(pot: OpponentAverage):
        return (lambda z: quad * confinement(z, torus) + pot.value(z),
                lambda z: pot.grad(z).add_(confinement_grad(z, torus), alpha=quad))

    fixed_x, fixed_y = prior(game.dim_x), prior(game.dim_y)

    def sample(pot: OpponentAverage, fixed: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        if inner == "weights":  # prior draws: uniform on the torus, so the confinement enters the weights there
            return fixed, torch.softmax(-pot.value(fixed) - (quad * confinement(fixed, True) if torus else 0), 0)
        value, grad = potential(pot)
        if inner == "exact":
            points = grid.to(dtype=dtype, device=device)
            probs = torch.softmax(-value(points[:, None]), 0)
            cell = float(points[1] - points[0])
            idx = torch.multinomial(probs, particles, replacement=True, generator=generator)
            jitter = (torch.rand(particles, generator=generator, dtype=dtype, device=device) - 0.5) * cell
            z = points[idx] + jitter
            return (torch.remainder(z, 1.0) if torus else z)[:, None], None
        start = prior(fixed.shape[1])
        if inner == "proximal":
            return proximal_sampler(start, value, grad, eta=proximal_eta, steps=inner_steps,
                                    inner_steps=proximal_inner, inner_step=step, generator=generator), None
        return langevin(start, value, grad, step=step, steps=inner_steps, generator=generator, sampler=sampler,
                        torus=torus), None

    x_now, y_now = fixed_x, fixed_y
    wx_now = wx_prev = _uniform_weights(x_now)
    wy_now = _uniform_weights(y_now)
    x_prev = x_now
    if not meta:
        _check_payoff_range(game, x_now, y_now)
    xs, ys, wxs, wys = [x_now], [y_now], [wx_now], [wy_now]
    for t in range(outer_steps):
        y_pot.decay(mu)
        y_pot.add(x_now, -(1 - mu) * (1 + e * mu) / lam2, wx_now)
        if e:
            y_pot.add(x_prev, (1 - mu) * e * mu / lam2, wx_prev)
        y_now, wy = sample(y_pot, fixed_y)
        wy_now = _uniform_weights(y_now) if wy is None else wy
        x_pot.decay(mu)
        x_pot.add(y_now, (1 - mu) / lam2, wy_now)
        x_new, wx = sample(x_pot, fixed_x)
        x_prev, wx_prev = x_now, wx_now
        x_now, wx_now = x_new, (_uniform_weights(x_new) if wx is None else wx)
        if not meta and not (torch.isfinite(x_now).all() and torch.isfinite(y_now).all()):
            raise ConvergenceError(f"PAPAL particles became non-finite at outer step {t + 1}: lower the step "
                                   f"size (now {step})")
        xs.append(x_now)
        ys.append(y_now)
        wxs.append(wx_now)
        wys.append(wy_now)
        if callback is not None:
            callback(t + 1, x_now, y_now, wx_now, wy_now)
    chosen = outer_steps
    if output == "random" and not meta:
        weights = torch.tensor([mu ** (-s) for s in range(1, outer_steps + 1)], dtype=torch.float64,
                               device=generator.device)
        chosen = int(torch.multinomial(weights / weights.sum(), 1, generator=generator)) + 1
    return PapalResult(x=xs[chosen], y=ys[chosen], xs=xs, ys=ys, chosen_step=chosen, mu=mu, wxs=wxs, wys=wys)


def _check_payoff_range(game: Game, x: torch.Tensor, y: torch.Tensor) -> None:
    values = game.payoff(x[:256], y[:256])
    low, high = float(values.min()), float(values.max())
    if low < -1 - 1e-9 or high > 1 + 1e-9:
        warnings.warn(f"payoff f leaves [-1, 1] on the sampled points: observed range [{low:.3g}, {high:.3g}]; "
                      "PAPAL's constants assume |f| <= 1", stacklevel=3)
