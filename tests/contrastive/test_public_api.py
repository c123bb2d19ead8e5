"""``tenfold.contrastive`` exports the memory bank and the MPCL variant losses, each with a docstring
example that imports from the package and runs (doctest)."""

import doctest

import pytest

import tenfold.contrastive as contrastive
from tenfold.contrastive.bank import MemoryBank

WITH_EXAMPLES = ["MemoryBank", "mp_infonce", "simclr_attn_loss", "simsiam_multi_loss"]


def test_memory_bank_is_exported():
    assert "MemoryBank" in contrastive.__all__ and contrastive.MemoryBank is MemoryBank
    for name in contrastive.__all__:
        assert getattr(contrastive, name) is not None


@pytest.mark.parametrize("name", WITH_EXAMPLES)
def test_docstring_example_imports_from_the_package_and_runs(name):
    obj = getattr(contrastive, name)
    tests = [t for t in doctest.DocTestFinder(recurse=False).find(obj, name, globs={}) if t.examples]
    assert tests, f"{name} has no docstring example"
    assert any("from tenfold.contrastive import" in ex.source for t in tests for ex in t.examples)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    for t in tests:
        runner.run(t)
    assert runner.summarize(verbose=False).failed == 0
