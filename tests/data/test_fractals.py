"""FractalDB-style IFS images (tenfold.data.fractals): the chaos game, the filling-rate filter, the dataset."""

import pytest
import torch

from tenfold.data.fractals import IFS, chaos_game, fill_rates, fractal_categories, fractals
from tenfold.errors import DataError

SIERPINSKI = IFS(torch.tensor([[[0.5, 0.0, 0.0], [0.0, 0.5, 0.0]],
                               [[0.5, 0.0, 0.5], [0.0, 0.5, 0.0]],
                               [[0.5, 0.0, 0.25], [0.0, 0.5, 0.5]]], dtype=torch.float64),
                 torch.full((3,), 1 / 3, dtype=torch.float64))


def test_every_chaos_game_step_is_one_of_the_maps():
    pts = chaos_game([SIERPINSKI], 500, torch.Generator().manual_seed(0))[0].double()
    a, t = SIERPINSKI.maps[:, :, :2], SIERPINSKI.maps[:, :, 2]
    images = torch.einsum("jik,pk->pji", a, pts[:-1]) + t                  # (points - 1, maps, 2)
    gap = (images - pts[1:, None]).norm(dim=-1).amin(-1)
    assert gap.max() < 1e-5
    # the attractor of this IFS is the Sierpinski triangle with corners (0, 0), (1, 0), (0.5, 1)
    x, y = pts[:, 0], pts[:, 1]
    assert (y >= -1e-6).all() and (y <= 2 * x + 1e-5).all() and (y <= 2 * (1 - x) + 1e-5).all()


def test_filling_rate_separates_a_fractal_from_a_point():
    point = IFS(torch.tensor([[[0.1, 0.0, 0.3], [0.0, 0.1, 0.3]]], dtype=torch.float64), torch.ones(1, dtype=torch.float64))
    rates = fill_rates([SIERPINSKI, point], torch.Generator().manual_seed(0))
    assert 0.2 < rates[0] < 0.6 and rates[1] < 0.01


def test_categories_pass_the_filter_and_contract():
    cats = fractal_categories(20, seed=3, min_fill=0.15)
    assert len(cats) == 20
    assert (fill_rates(cats, torch.Generator().manual_seed(1)) >= 0.1).all()
    for f in cats:
        assert 2 <= len(f.probs) <= 8 and torch.isclose(f.probs.sum(), torch.tensor(1.0, dtype=torch.float64))
        assert (torch.linalg.matrix_norm(f.maps[:, :, :2], ord=2) < 0.95).all()


def test_the_same_seed_gives_the_same_pixels_and_splits_share_their_categories():
    a = fractals(6, 4, 32, seed=1, category_seed=0)
    b = fractals(6, 4, 32, seed=1, category_seed=0)
    held = fractals(6, 4, 32, seed=2, category_seed=0)
    assert torch.equal(a.x, b.x) and torch.equal(a.y, b.y)
    assert not torch.equal(a.x, held.x)
    assert a.x.shape == (24, 3, 32, 32) and torch.isfinite(a.x).all() and a.x.min() >= 0 and a.x.max() <= 1
    assert torch.bincount(a.y).tolist() == [4] * 6


def test_categories_are_told_apart_by_shape_not_by_colour():
    """A nearest-class-mean rule on held-out instances: far above chance on grey-level shape, near chance on
    the mean colour (colour is drawn per instance, independently of the category)."""
    train, held = fractals(10, 30, 32, seed=1, category_seed=0), fractals(10, 10, 32, seed=2, category_seed=0)

    def ncm(f):
        means = torch.stack([f(train.x[train.y == c]).mean(0) for c in range(10)])
        return (torch.cdist(f(held.x), means).argmin(1) == held.y).float().mean().item()

    shape = ncm(lambda x: x.mean(1).flatten(1))   # grey-level pixels
    colour = ncm(lambda x: x.flatten(2).max(-1).values)
    assert shape > 0.5 and colour < 0.3


@pytest.mark.parametrize("kwargs, field", [({"num_classes": 0}, "num_classes"), ({"per_class": 0}, "per_class"),
                                           ({"size": 4}, "size")])
def test_bad_arguments_name_the_field(kwargs, field):
    with pytest.raises(DataError, match=field):
        fractals(**{"num_classes": 2, "per_class": 2, **kwargs})


def test_an_impossible_filling_rate_is_refused():
    with pytest.raises(DataError, match="min_fill"):
        fractal_categories(2, min_fill=0.99)
