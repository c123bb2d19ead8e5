"""NC-FSCIL on a user's own class ids (session 1 = ids 10..14, not renumbered session by session): the
label-order assumption is checked up front with a one-line error naming the fix (on the landed code the run
ended with "the loss became nan; lower the learning rate", from empty class means), and
``renumber_sessions`` gives exactly the run of the session-ordered data."""

import pytest
import torch

from tenfold.errors import DataError
from tenfold.incremental import (BaseSettings, ETFClassifier, FSCILNet, IncrementalSettings, ProjectionHead,
                                 SessionData, cache_features, mlp_backbone, renumber_sessions, run_sessions,
                                 train_base)

SIZES = [5, 5, 5]
# the user's ids of the session-ordered classes 0..14: base 0..4, session 1 = 10..14, session 2 = 5..9
USER_ID = list(range(5)) + list(range(10, 15)) + list(range(5, 10))


def _blobs(n_per_class, classes, seed, dim=10):
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(15, dim, generator=torch.Generator().manual_seed(99)) * 3
    y = torch.tensor(classes).repeat_interleave(n_per_class)
    return centres[y] + torch.randn(len(y), dim, generator=g), y


def _session_ordered():
    """Training samples per session and a test set, labels in session order."""
    xs, ys = zip(*[_blobs(30 if t == 0 else 5, list(range(5 * t, 5 * t + 5)), t) for t in range(3)])
    xt, yt = _blobs(6, list(range(15)), 7)
    return list(xs), list(ys), xt, yt


def _user_ids(labels):
    return torch.tensor(USER_ID)[labels]


def _base_net():
    torch.manual_seed(0)
    net = FSCILNet(mlp_backbone(10, 16), ProjectionHead(16, 16), ETFClassifier(15, 16, seed=0))
    xs, ys, _, _ = _session_ordered()
    return train_base(net, xs[0], ys[0], BaseSettings(epochs=3, lr=0.05), torch.Generator().manual_seed(0))


def _run(net, xs, ys, xt, yt):
    data = cache_features(net, xs, ys, xt, yt, SIZES)
    return run_sessions(net, "etf-dr", data, IncrementalSettings(steps=10), torch.Generator().manual_seed(0))[0]


def test_original_class_ids_are_refused_up_front_naming_the_fix():
    net = _base_net()
    xs, ys, xt, yt = _session_ordered()
    user_ys, user_yt = [_user_ids(y) for y in ys], _user_ids(yt)
    assert _user_ids(ys[1]).unique().tolist() == [10, 11, 12, 13, 14]
    with pytest.raises(DataError) as err:
        _run(net, xs, user_ys, xt, user_yt)
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith("session 1 training labels are 10..14: expected 5..9")
    assert "renumber_sessions(train_labels, test_labels)" in message
    # a SessionData built by hand is checked by run_sessions as well, before any training
    data = SessionData([torch.zeros(len(y), 16) for y in ys], user_ys, torch.zeros(len(yt), 16), user_yt, SIZES)
    with pytest.raises(DataError, match="session 1 training labels are 10..14"):
        run_sessions(net, "etf-dr", data, IncrementalSettings(steps=10), torch.Generator())


def test_renumbered_user_ids_give_the_run_of_session_ordered_labels():
    net = _base_net()
    xs, ys, xt, yt = _session_ordered()
    new_ys, new_yt, class_ids = renumber_sessions([_user_ids(y) for y in ys], _user_ids(yt))
    assert class_ids == USER_ID
    assert all(torch.equal(a, b) for a, b in zip(new_ys, ys)) and torch.equal(new_yt, yt)
    expected = _run(net, xs, ys, xt, yt)
    got = _run(net, xs, new_ys, xt, new_yt)
    assert got == expected
    assert len(got) == 3 and all(0.0 < r.all <= 1.0 for r in got)
    assert torch.equal(torch.tensor(class_ids)[new_yt], _user_ids(yt))  # back to the user's ids


def test_base_session_labels_must_be_the_first_classes():
    torch.manual_seed(0)
    net = FSCILNet(mlp_backbone(10, 16), ProjectionHead(16, 16), ETFClassifier(15, 16, seed=0))
    x, y = _blobs(4, [0, 1, 2, 3, 4], 0)
    with pytest.raises(DataError, match=r"base-session labels are 10..14: expected 0..4 .*renumber_sessions"):
        train_base(net, x, y + 10, BaseSettings(epochs=1), torch.Generator().manual_seed(0))


def test_renumber_sessions_errors():
    with pytest.raises(DataError, match="class id 3 is in the training labels of sessions 0 and 1"):
        renumber_sessions([torch.tensor([3, 4]), torch.tensor([3, 5])], torch.tensor([3]))
    with pytest.raises(DataError, match=r"test label ids \[9\] belong to no session"):
        renumber_sessions([torch.tensor([3, 4]), torch.tensor([5])], torch.tensor([3, 9]))
    with pytest.raises(DataError, match="test labels 15..17 are outside the 15 session classes"):
        cache_features(_base_net(), *_session_ordered()[:3], torch.tensor([15, 16, 17]), SIZES)
