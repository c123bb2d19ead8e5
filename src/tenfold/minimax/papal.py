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
                     steps: int) -> GridHistory:
    """The outer loop of spec 1.2 with closed-form Gibbs steps on grids ``xs`` (rows of F), ``ys`` (columns).

    Probability vectors on the grid points; the potentials are exact, only space is discretized.
    """
    check_regularization(lam1, lam2)
    require(steps >= 1, "steps", steps, "a positive number of outer steps")
    require(F.shape == (len(xs), len(ys)), "F", tuple(F.shape), f"a ({len(xs)}, {len(ys)}) payoff matrix")
    mu = momentum(lam2)
    g = lam1 / lam2 * xs.square()
    h = lam1 / lam2 * ys.square()
    hist = GridHistory(a=[_gibbs(g)], b=[_gibbs(h)])
    a_prev = hist.a[0]
    for _ in range(steps):
        a_now = hist.a[-1]
        phi = -(1 + mu) * (a_now @ F) + mu * (a_prev @ F)
        h = mu * h + (1 - mu) * (phi + lam1 * ys.square()) / lam2
        b = _gibbs(h)
        g = mu * g + (1 - mu) * (F @ b + lam1 * xs.square()) / lam2
        a_prev = a_now
        hist.a.append(_gibbs(g))
        hist.b.append(b)
    return hist


class OpponentAverage:
    """The potential's opponent term  sum_s c_s mean_r f(z_r^(s), .)  seen from one player.

    ``side="y"``: the potential of y built from past x sets (f(x_r, y)); ``side="x"``: of x from y sets.
    Low-rank games keep one feature vector (exact EMA, any age); otherwise a pool of past sets whose
    coefficients decay by mu per step, dropped once older than ``horizon`` steps (spec 1.3).
    """

    def __init__(self, game: Game, side: str, horizon: int, low_rank: bool):
        require(side in ("x", "y"), "side", side, "'x' or 'y'")
        require(horizon >= 1, "horizon", horizon, "a positive pool age")
        require(not low_rank or isinstance(game, LowRankGame), "low_rank", low_rank,
                "False for a game without low-rank features")
        self.game, self.side, self.horizon, self.low_rank = game, side, horizon, low_rank
        self.features: torch.Tensor | None = None
        self.pool: list[list] = []  # [particles, coefficient, age]

    def decay(self, mu: float) -> None:
        if self.features is not None:
            self.features = mu * self.features
            self._coef = self.features.tolist()
        for entry in self.pool:
            entry[1] *= mu
            entry[2] += 1
        self.pool = [e for e in self.pool if e[2] <= self.horizon]

    def add(self, particles: torch.Tensor, coef: float, weights: torch.Tensor | None = None) -> None:
        w = torch.full((len(particles),), 1.0 / len(particles), dtype=particles.dtype) if weights is None else weights
        if self.low_rank:
            feats = self.game.u(particles) if self.side == "y" else self.game.v(particles)
            contribution = coef * (w @ feats)
            self.features = contribution if self.features is None else self.features + contribution
            self._coef = self.features.tolist()  # python floats: no tensor reads inside the Langevin loop
        else:
            for entry in self.pool:  # X(t-1) was added last step as X(t): accumulate, do not duplicate
                if entry[0] is particles and torch.equal(entry[3], w):
                    entry[1] += coef
                    return
            self.pool.append([particles, coef, 0, w])

    def _stacked(self) -> tuple[torch.Tensor, torch.Tensor]:
        return (torch.cat([e[0] for e in self.pool]), torch.cat([e[1] * e[3] for e in self.pool]))

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


def sample_prior(n: int, dim: int, lam1: float, lam2: float, torus: bool, generator: torch.Generator,
                 dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """pi = N(0, lam2/(2 lam1) I), or uniform on [0, 1)^dim on the torus."""
    if torus:
        return torch.rand(n, dim, generator=generator, dtype=dtype)
    return math.sqrt(lam2 / (2 * lam1)) * torch.randn(n, dim, generator=generator, dtype=dtype)


def langevin(z: torch.Tensor, potential: Callable[[torch.Tensor], torch.Tensor],
             grad: Callable[[torch.Tensor], torch.Tensor], *, step: float, steps: int, generator: torch.Generator,
             sampler: str = "ula", torus: bool = False) -> torch.Tensor:
    """ULA  z <- z - step grad U(z) + sqrt(2 step) xi, or MALA (Metropolis-adjusted, Algorithm 2).

    On the torus positions wrap into [0, 1) (our extension; MALA is not offered there).
    """
    require(step > 0, "step", step, "a positive Langevin step size")
    require(sampler in ("ula", "mala"), "sampler", sampler, "'ula' or 'mala'")
    require(not (torus and sampler == "mala"), "sampler", sampler, "'ula' on the torus")
    noise_scale = math.sqrt(2 * step)
    g = grad(z)
    u = potential(z) if sampler == "mala" else None
    chunk = max(1, min(steps, 2**22 // max(z.numel(), 1)))  # draw noise for many steps at once
    for k in range(steps):
        if k % chunk == 0:
            block = torch.randn((min(chunk, steps - k), *z.shape), generator=generator, dtype=z.dtype)
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
        accept = torch.log(torch.rand(len(z), generator=generator, dtype=z.dtype)) < log_accept
        z = torch.where(accept[:, None], proposal, z)
        g = torch.where(accept[:, None], g_new, g)
        u = torch.where(accept, u_new, u)
    return z


@dataclass
class PapalResult:
    """Final particle sets (Option I: the last pair; Option II: a random iterate with P(t) ∝ mu^(-t))
    and every outer iterate X(t), Y(t) for t = 0..T."""

    x: torch.Tensor
    y: torch.Tensor
    xs: list[torch.Tensor]
    ys: list[torch.Tensor]
    chosen_step: int
    mu: float = 1.0

    def mixture(self, last: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """The gamma-weighted mixture (gamma_t = mu^(-t), the measure the theorem bounds) of the last
        ``last`` iterates: (x, y, wx, wy) with particle weights summing to one."""
        require(1 <= last <= len(self.xs) - 1, "last", last, f"between 1 and {len(self.xs) - 1} iterates")
        steps = range(len(self.xs) - last, len(self.xs))
        gamma = torch.tensor([self.mu ** (-(s - steps[0])) for s in steps], dtype=self.x.dtype)
        gamma = gamma / gamma.sum()

        def stack(sets):
            z = torch.cat([sets[s] for s in steps])
            w = torch.cat([torch.full((len(sets[s]),), float(g) / len(sets[s]), dtype=z.dtype)
                           for s, g in zip(steps, gamma)])
            return z, w

        (x, wx), (y, wy) = stack(self.xs), stack(self.ys)
        return x, y, wx, wy


def papal(game: Game, *, lam1: float, lam2: float, particles: int, outer_steps: int, inner_steps: int,
          step: float, generator: torch.Generator, sampler: str = "ula", low_rank: bool | None = None,
          horizon: int | None = None, output: str = "last", dtype: torch.dtype = torch.float64,
          callback: Callable[[int, torch.Tensor, torch.Tensor], None] | None = None) -> PapalResult:
    """Algorithm 1 of the paper (spec 1.3) with M = ``particles`` per player.

    Each outer step t: (1) decay the pools by mu and add X(t) with -(1-mu)(1+mu)/lam2 and X(t-1) with
    (1-mu) mu/lam2 to y's potential; (2) draw Y from the prior, run ``inner_steps`` Langevin steps on
    h^(t+1)(y) = (lam1/lam2)|y|^2 + pool; (3) add Y(t+1) with (1-mu)/lam2 to x's potential and do the same
    for X. ``low_rank`` (default: whenever the game is a LowRankGame) keeps feature means instead of pools.
    ``horizon`` (default ceil(10/lam2)) prunes pool sets by age. ``callback(t, X, Y)`` after each step.
    """
    check_regularization(lam1, lam2, game.torus)
    require(isinstance(particles, int) and particles >= 1, "M", particles, "an integer number of particles >= 1")
    require(outer_steps >= 1, "outer_steps", outer_steps, "a positive number of outer steps")
    require(inner_steps >= 1, "inner_steps", inner_steps, "a positive number of Langevin steps")
    require(step > 0, "step", step, "a positive Langevin step size")
    require(output in ("last", "random"), "output", output, "'last' (Option I) or 'random' (Option II)")
    low_rank = isinstance(game, LowRankGame) if low_rank is None else low_rank
    horizon = horizon or math.ceil(10 / lam2)
    mu = momentum(lam2)
    quad = 0.0 if game.torus else lam1 / lam2
    y_pot = OpponentAverage(game, "y", horizon, low_rank)
    x_pot = OpponentAverage(game, "x", horizon, low_rank)

    def prior(dim: int) -> torch.Tensor:
        return sample_prior(particles, dim, lam1, lam2, game.torus, generator, dtype)

    x_now = prior(game.dim_x)
    x_prev = x_now
    y_now = prior(game.dim_y)
    _check_payoff_range(game, x_now, y_now)
    xs, ys = [x_now], [y_now]
    for t in range(outer_steps):
        y_pot.decay(mu)
        y_pot.add(x_now, -(1 - mu) * (1 + mu) / lam2)
        y_pot.add(x_prev, (1 - mu) * mu / lam2)
        y_now = langevin(prior(game.dim_y), lambda z: quad * z.square().sum(1) + y_pot.value(z),
                         lambda z: y_pot.grad(z).add_(z, alpha=2 * quad), step=step, steps=inner_steps,
                         generator=generator, sampler=sampler, torus=game.torus)
        x_pot.decay(mu)
        x_pot.add(y_now, (1 - mu) / lam2)
        x_prev, x_now = x_now, langevin(prior(game.dim_x), lambda z: quad * z.square().sum(1) + x_pot.value(z),
                                        lambda z: x_pot.grad(z).add_(z, alpha=2 * quad), step=step, steps=inner_steps,
                                        generator=generator, sampler=sampler, torus=game.torus)
        if not (torch.isfinite(x_now).all() and torch.isfinite(y_now).all()):
            raise ConvergenceError(f"PAPAL particles became non-finite at outer step {t + 1}: lower the step "
                                   f"size (now {step})")
        xs.append(x_now)
        ys.append(y_now)
        if callback is not None:
            callback(t + 1, x_now, y_now)
    chosen = outer_steps
    if output == "random":
        weights = torch.tensor([mu ** (-s) for s in range(1, outer_steps + 1)], dtype=torch.float64)
        chosen = int(torch.multinomial(weights / weights.sum(), 1, generator=generator)) + 1
    return PapalResult(x=xs[chosen], y=ys[chosen], xs=xs, ys=ys, chosen_step=chosen, mu=mu)


def _check_payoff_range(game: Game, x: torch.Tensor, y: torch.Tensor) -> None:
    values = game.payoff(x[:256], y[:256])
    low, high = float(values.min()), float(values.max())
    if low < -1 - 1e-9 or high > 1 + 1e-9:
        warnings.warn(f"payoff f leaves [-1, 1] on the sampled points: observed range [{low:.3g}, {high:.3g}]; "
                      "PAPAL's constants assume |f| <= 1", stacklevel=3)
