"""``tenfold.minimax.solve``, the entry point for a user's own game: it reaches an analytic regularized MNE,
lowers the NI error of the spec's game toward its reference, runs in float32/float64 and on the meta device
(and CUDA where present), saves and reloads its trajectory, and refuses bad input in one line."""

import json
import math

import pytest
import torch

from tenfold.errors import ConfigError, DataError
from tenfold.minimax import (
    CallableGame,
    Game,
    LowRankGame,
    MatchingPennies,
    SinusoidGame,
    Solution,
    Trajectory,
    solve,
)

D = torch.float64


class AffineGame(LowRankGame):
    """f = a x y + b x - c y = u(x) . v(y) with u = (a x, b x, 1), v = (y, 1, -c y). Its regularized MNE is
    Gaussian: the Gibbs best responses p ∝ exp(-((a m_y + b) x + lam1 x^2)/lam2),
    q ∝ exp(((a m_x - c) y - lam1 y^2)/lam2) have variance lam2/(2 lam1) and means m_x = -(a m_y + b)/(2 lam1),
    m_y = (a m_x - c)/(2 lam1), whose fixed point is m_x = (a c - 2 lam1 b)/(4 lam1^2 + a^2)."""

    rank = 3

    def __init__(self, a, b, c):
        self.a, self.b, self.c = a, b, c

    def u(self, x):
        return torch.cat([self.a * x, self.b * x, torch.ones_like(x)], 1)

    def v(self, y):
        return torch.cat([y, torch.ones_like(y), -self.c * y], 1)

    def u_grad_dot(self, x, coef):  # grad_x sum_k coef_k u_k(x): constant in x
        return torch.ones_like(x) * (self.a * coef[0] + self.b * coef[1])

    def v_grad_dot(self, y, coef):
        return torch.ones_like(y) * (coef[0] - self.c * coef[2])

    @staticmethod
    def equilibrium(a, b, c, lam1, lam2):
        k = 2 * lam1
        mx = (a * c - b * k) / (k * k + a * a)
        return mx, (a * mx - c) / k, lam2 / (2 * lam1)


def test_affine_game_reaches_its_analytic_regularized_equilibrium():
    a, b, c, lam1, lam2 = 0.5, 0.2, -0.4, 0.5, 0.1
    mx, my, var = AffineGame.equilibrium(a, b, c, lam1, lam2)  # -0.32, 0.24, 0.1
    sol = solve(AffineGame(a, b, c), particles=300, lam1=lam1, lam2=lam2, outer_steps=40, inner_steps=40,
                step=0.01, track_ni=False, ni_options=dict(iters=0, from_particles=False))  # NI: grid only
    assert isinstance(sol, Solution) and sol.x.shape == (3000, 1) and sol.wx.shape == (3000,)  # mixture of 10
    torch.testing.assert_close(sol.wx.sum(), torch.tensor(1.0, dtype=D))
    # seeds 0-3 land within 0.016 of the means; ULA at step 0.01 inflates the variance by 5-8%
    assert abs(float(sol.wx @ sol.x[:, 0]) - mx) < 0.03 and abs(float(sol.wy @ sol.y[:, 0]) - my) < 0.03
    vx = float(sol.wx @ (sol.x[:, 0] - sol.wx @ sol.x[:, 0]).square())
    assert 0.9 * var < vx < 1.2 * var
    gaps = sol.trajectory.gap
    assert sol.trajectory.step == list(range(41)) and all(math.isfinite(g) and g >= 0 for g in gaps)
    assert gaps[-1] < 0.1 * gaps[0] and sol.gap < 0.1 * gaps[0]  # ~0.09 at the prior, ~0.001 at the end
    assert all(math.isnan(v) for v in sol.trajectory.ni_error)  # track_ni=False


def test_ni_error_of_the_spec_game_falls_from_the_prior_toward_its_reference():
    """The spec's sinusoid game: the regularized MNE has NI 0.266, the prior 0.422 (spec 1.8.1)."""
    sol = solve(SinusoidGame(), particles=300, outer_steps=20, inner_steps=100, step=0.01, every=10)
    traj = sol.trajectory
    assert traj.step == [0, 10, 20] and traj.unit == "outer step"
    assert sol.ni_error < traj.ni_error[0] - 0.03
    assert abs(sol.ni_error - 0.266) < 0.08  # M-particle sampling biases NI upwards
    assert traj.gap[-1] < 0.3 * traj.gap[0]
    assert all(s >= 0 for s in traj.seconds) and traj.seconds == sorted(traj.seconds)


@pytest.mark.parametrize("method", ["mfl-da", "wfr-da"])
def test_baselines_through_the_same_entry_point(method):
    x0 = torch.randn(50, 1, dtype=D, generator=torch.Generator().manual_seed(1))
    sol = solve(SinusoidGame(), method, x0=x0, y0=x0.clone(), steps=40, every=20, track_ni=False)
    assert sol.trajectory.step == [0, 20, 40] and sol.trajectory.unit == "step"
    assert sol.x.shape == (50, 1) and torch.isfinite(sol.x).all() and math.isfinite(sol.ni_error)
    torch.testing.assert_close(sol.wx.sum(), torch.tensor(1.0, dtype=D))


def test_a_plain_payoff_in_two_dimensions_float64_and_float32():
    f = lambda x, y: torch.tanh((x * y).sum(-1) + 0.3 * x[..., 0])  # noqa: E731 - the user's one-liner
    for dtype in (torch.float32, torch.float64):
        sol = solve(f, dims=(2, 2), particles=20, outer_steps=3, inner_steps=5, dtype=dtype, every=3)
        assert sol.x.dtype == dtype and sol.wy.dtype == dtype and sol.x.shape == (40, 2)  # the mixture of the last 2 iterates
        assert math.isnan(sol.gap) and all(math.isnan(g) for g in sol.trajectory.gap)  # no d > 1 estimate
        assert math.isfinite(sol.ni_error) and sol.ni_error >= 0


@pytest.mark.parametrize("method", ["papal", "mfl-da", "wfr-da"])
def test_meta_device_keeps_shapes_and_dtypes(method):
    kw = dict(outer_steps=2, inner_steps=3) if method == "papal" else dict(steps=2)
    sol = solve(SinusoidGame(), method, particles=8, device="meta", dtype=torch.float32, **kw)
    for t in (sol.x, sol.y, sol.wx, sol.wy):
        assert t.device.type == "meta" and t.dtype == torch.float32
    assert isinstance(sol.ni_error, torch.Tensor) and sol.ni_error.device.type == "meta"
    assert all(math.isnan(v) for v in sol.trajectory.ni_error + sol.trajectory.spread_x)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_from_the_initial_particles():
    x0 = torch.randn(64, 1, device="cuda")
    sol = solve(SinusoidGame(), "mfl-da", x0=x0, y0=x0.clone(), steps=20, track_ni=False)
    assert sol.x.device.type == "cuda" and sol.x.dtype == torch.float32 and math.isfinite(sol.gap)
    sol = solve(SinusoidGame(), particles=64, device="cuda", outer_steps=3, inner_steps=10)
    assert sol.x.device.type == "cuda" and sol.x.dtype == D and math.isfinite(sol.ni_error)


def test_trajectory_saves_loads_and_plots(tmp_path):
    sol = solve(SinusoidGame(), particles=16, outer_steps=3, inner_steps=5, track_ni=False)
    path = sol.save(tmp_path / "trajectory.json")
    data = json.loads(path.read_text())
    assert data["method"] == "papal" and data["ni_error"] == [None] * 4  # NaN written as null
    again = Trajectory.load(path)
    assert again.to_dict() == sol.trajectory.to_dict() and again.step == [0, 1, 2, 3]
    pytest.importorskip("matplotlib")
    fig = again.plot(tmp_path / "trajectory.png")
    assert (tmp_path / "trajectory.png").stat().st_size > 1000 and len(fig.axes) == 2


def test_trajectory_files_that_are_not_trajectories_are_one_line_errors(tmp_path):
    (tmp_path / "bad.json").write_text(json.dumps({"method": "papal", "step": [0]}))
    with pytest.raises(DataError, match=r"bad.json is not a saved trajectory: keys \['ess_x'"):
        Trajectory.load(tmp_path / "bad.json")
    (tmp_path / "text.json").write_text("not json")
    with pytest.raises(DataError, match="text.json is not JSON"):
        Trajectory.load(tmp_path / "text.json")
    with pytest.raises(DataError, match="missing.json does not exist"):
        Trajectory.load(tmp_path / "missing.json")


class WrongShapeGame(Game):
    def payoff(self, x, y):
        return (x - y.T).sum(0)


BAD = {
    "payoff of the wrong shape (plain f)": (dict(game=lambda x, y: x + y, dims=(2, 2)),
                                            r"expected fn\(x, y\) -> \(M, N\)"),
    "payoff of the wrong shape (a Game)": (dict(game=WrongShapeGame()), r"^payoff=\(8,\) is invalid: expected an \(8, 8\) matrix"),
    "non-finite payoff": (dict(game=lambda x, y: torch.log(x * y).squeeze(-1)),
                          r"^payoff f\(x, y\)=nan is invalid at x=\[.*\], y=\[.*\]: expected finite"),
    "x0 of the wrong dimension": (dict(game=SinusoidGame(), method="mfl-da", x0=torch.zeros(5, 2, dtype=D)),
                                  r"^x0=\(5, 2\) is invalid: expected a \(particles, 1\) tensor"),
    "non-finite x0": (dict(game=SinusoidGame(), method="wfr-da", x0=torch.tensor([[0.0], [math.inf]], dtype=D)),
                      r"^x0 is invalid: it holds non-finite positions \(first at row 1\)"),
    "x0 and y0 apart": (dict(game=SinusoidGame(), method="mfl-da", x0=torch.zeros(5, 1, dtype=D),
                             y0=torch.zeros(5, 1)), r"^y0=.* is invalid: expected the dtype and device of x0"),
    "dims against the game's": (dict(game=SinusoidGame(), dims=(2, 1)), r"^dims=\(2, 1\) is invalid"),
    "unknown method": (dict(game=SinusoidGame(), method="gda"), r"^method='gda' is invalid"),
    "unknown option": (dict(game=SinusoidGame(), outer_step=3), r"^options=\['outer_step'\] is invalid"),
    "x0 for PAPAL": (dict(game=SinusoidGame(), x0=torch.zeros(5, 1, dtype=D)), r"^x0='given' is invalid"),
    "average past the iterates": (dict(game=SinusoidGame(), outer_steps=3, average=4), r"^average=4 is invalid"),
    "no particles": (dict(game=SinusoidGame(), particles=0), r"^particles=0 is invalid"),
    "particles against x0": (dict(game=SinusoidGame(), method="mfl-da", x0=torch.zeros(5, 1, dtype=D)),
                             r"^particles=8 is invalid: expected len\(x0\) = 5 or left out"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_is_a_one_line_error_naming_the_value(case):
    kwargs, pattern = BAD[case]
    with pytest.raises(ConfigError, match=pattern) as info:
        solve(**{"particles": 8, "outer_steps": 2, "inner_steps": 2, **kwargs}
              if kwargs.get("method", "papal") == "papal" else {"particles": 8, "steps": 2, **kwargs})
    assert "\n" not in str(info.value)


def test_callable_game_and_plain_payoff_agree():
    f = lambda x, y: torch.tanh((x * y).sum(-1))  # noqa: E731
    one = solve(f, dims=(2, 2), particles=10, outer_steps=2, inner_steps=3, track_ni=False)
    two = solve(CallableGame(f, 2, 2), particles=10, outer_steps=2, inner_steps=3, track_ni=False)
    torch.testing.assert_close(one.x, two.x)
    assert one.ni_error == two.ni_error


@pytest.mark.parametrize("game", [SinusoidGame(), MatchingPennies()], ids=["line", "torus"])
def test_binned_density_equals_the_direct_kernel_sum(game):
    """The gap estimate's binned KDE against the O(M G) sum of Gaussians (wrapped on the torus)."""
    from tenfold.minimax.solve import _GapEstimator

    est = _GapEstimator(game, 0.05, 0.1, torch.empty(0, dtype=D), 7.0, 801)
    g = torch.Generator().manual_seed(0)
    z = torch.randn(500, 1, generator=g, dtype=D) * 0.7 + 0.3
    z = torch.remainder(0.1 * z, 1.0) if game.torus else z
    w = torch.rand(500, generator=g, dtype=D)
    w = w / w.sum()
    zz = z[:, 0]
    sd = float((w @ (zz - w @ zz).square()).sqrt())
    h = max(1.06 * sd * float(1 / w.square().sum()) ** -0.2, float(est.grid[1] - est.grid[0]))
    d = est.grid[:, None] - zz[None]
    d = torch.remainder(d + 0.5, 1.0) - 0.5 if game.torus else d
    ref = (torch.exp(-0.5 * (d / h).square()) * w).sum(1)
    assert float((est.density(z, w) - ref / ref.sum()).abs().sum()) < 1e-3  # linear binning: O(cell^2 / h^2)
