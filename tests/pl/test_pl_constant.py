"""The PL constant where it is attained: x = y with x_1 = 0.4 y_1, ~0.097/T (not 0.24/T at the start)."""

import pytest

from tenfold.pl import C3, HardFunction, pl_constant, pl_ratio


@pytest.mark.parametrize("T", [2, 8, 32])
def test_pl_constant_is_attained_off_the_start(T):
    g = HardFunction(T, 30)
    ratio, s = pl_constant(g)
    assert abs(s - 0.4) < 0.01
    assert 0.095 < ratio * T < 0.101  # closed form ((3s-1)^2 + (1-s)^2)/(2 g) at s = 0.4
    assert ratio < 0.5 * pl_ratio(g.value_and_grad, g.start)  # the start overstates it ~2.4x
    assert ratio >= 1 / (C3 * T)  # Lemma 2
    x = g.start.clone()
    x[0] = 0.4
    value, grad = g.value_and_grad(x)
    assert abs(float(grad.square().sum()) - ((3 * 0.4 - 1) ** 2 + (1 - 0.4) ** 2)) < 1e-12
