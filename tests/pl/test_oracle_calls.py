"""run_method counts oracle calls (a line search makes several per iterate), not iterates; method names of
docs/pl-lower-bound.md exist in the code."""

import re
from pathlib import Path

import pytest

from tenfold.errors import ConfigError
from tenfold.pl import METHODS, CountingOracle, HardFunction, NesterovQuadratic, agd, gd, method_by_name, run_method

DOCS = Path(__file__).resolve().parents[2] / "docs" / "pl-lower-bound.md"


def backtracking_gd(oracle, x0, *, step=1.0, shrink=0.5):
    """GD with an Armijo backtracking line search: each iterate queries the oracle until the step is
    accepted, i.e. at least twice (the gradient at x, then the trial point(s))."""
    x = x0.clone()
    while True:
        fx, g = oracle(x)
        t = step
        while True:
            trial = x - t * g
            f_trial, _ = oracle(trial)
            if f_trial <= fx - 0.5 * t * g.square().sum():
                break
            t *= shrink
        x = trial
        yield x


def _counted(oracle):
    calls = []

    def wrapped(x):
        calls.append(1)
        return oracle(x)

    return wrapped, calls


def test_line_search_method_reports_every_oracle_call():
    f = NesterovQuadratic(40, L=10.0, mu=0.5)
    mine, made = _counted(f.value_and_grad)
    trace = run_method(backtracking_gd, f.value, f.start, oracle=mine, eps=1e-6, max_queries=10_000,
                       target=f.min_value, track_support=False)
    assert trace.reached
    assert trace.queries == len(made)  # every call the method made, no more
    assert trace.queries >= 2 * trace.iterations  # several queries per iterate
    assert trace.iterations == len(trace.values) - 1 and trace.calls[-1] == trace.queries


def test_iterator_built_on_a_counting_oracle_and_the_budget_counts_calls():
    f = NesterovQuadratic(40, L=10.0, mu=0.5)
    oracle = CountingOracle(f.value_and_grad)
    trace = run_method(backtracking_gd(oracle, f.start), f.value, f.start, oracle=oracle, eps=1e-12,
                       max_queries=25, target=f.min_value, track_support=False)
    assert not trace.reached and trace.queries == oracle.calls >= 25 and trace.iterations < 25


def test_user_iterator_without_a_counter_is_refused_in_one_line():
    f = NesterovQuadratic(10, L=10.0, mu=0.5)
    with pytest.raises(ConfigError, match="CountingOracle") as info:
        run_method(backtracking_gd(f.value_and_grad, f.start), f.value, f.start, eps=1e-3, max_queries=100)
    assert "\n" not in str(info.value)
    with pytest.raises(ConfigError, match="^oracle=None"):
        run_method(backtracking_gd, f.value, f.start, eps=1e-3, max_queries=100)


@pytest.mark.parametrize("name", list(METHODS))
def test_builtin_methods_make_one_call_per_iterate_and_every_spelling_agrees(name):
    T = 2
    g = HardFunction(T, 6)
    params = {"GD": {"L": 37.0}, "AGD": {"L": 37.0, "mu": 0.24 / T}, "HB": {"L": 37.0, "mu": 0.24 / T},
              "Adam": {"lr": 0.03}}[name]
    old_style = run_method(METHODS[name](g.value_and_grad, g.start, **params), g.value, g.start, eps=1e-2,
                           max_queries=500)
    by_name = run_method(name, g.value, g.start, oracle=g.value_and_grad, eps=1e-2, max_queries=500, **params)
    by_function = run_method(METHODS[name].__name__, g.value, g.start, oracle=g.value_and_grad, eps=1e-2,
                             max_queries=500, **params)
    for trace in (by_name, by_function):
        assert trace.queries == trace.iterations == old_style.queries and trace.values == old_style.values
    assert old_style.iterations == old_style.queries and old_style.zero_chain_holds()


def test_zero_chain_is_judged_by_oracle_calls():
    g = HardFunction(2, 4)
    trace = run_method(backtracking_gd, g.value, g.start, oracle=g.value_and_grad, eps=1e-2, max_queries=400)
    assert trace.zero_chain_holds() and trace.queries > trace.iterations


def test_unknown_method_name_and_misplaced_parameters():
    g = HardFunction(2, 4)
    with pytest.raises(ConfigError, match="^method='nesterov' is invalid: expected one of GD, AGD, HB, Adam, gd"):
        method_by_name("nesterov")
    with pytest.raises(ConfigError, match="^L: method parameters"):
        run_method(gd(g.value_and_grad, g.start, L=37.0), g.value, g.start, eps=1e-2, max_queries=10, L=37.0)
    assert method_by_name("heavy_ball") is METHODS["HB"] and method_by_name("AGD") is agd


def test_method_names_in_the_docs_are_accepted_by_run_method():
    text = DOCS.read_text()
    names = set(re.findall(r'METHODS\["(\w+)"\]', text) + re.findall(r'"(\w+)"', text[text.index("Methods:"):].split("\n\n")[0])
                + re.findall(r"`(\w+)`", text[text.index("Methods:"):].split("\n\n")[0]))
    names -= {"METHODS", "run_method", "method_by_name"}
    assert {"GD", "AGD", "HB", "Adam", "gd", "agd", "heavy_ball", "adam"} <= names
    g = HardFunction(2, 4)
    params = {"gd": {"L": 37.0}, "agd": {"L": 37.0, "mu": 0.1}, "heavy_ball": {"L": 37.0, "mu": 0.1}, "adam": {"lr": 0.03}}
    for name in names:
        method = method_by_name(name)
        trace = run_method(name, g.value, g.start, oracle=g.value_and_grad, eps=0.5, max_queries=3,
                           **params[method.__name__])
        assert trace.queries == trace.iterations >= 1
