"""Layering measured from the imports: each room has one job.

- method families and data write files through ``tenfold.io``, never through ``engine/checkpoint.py``;
- data never imports a method family; benchmarks never import experiments;
- thread pinning lives in the engine; the old import paths keep working.
"""

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "tenfold"
FAMILIES = ["snn", "implicit", "tuning", "contrastive", "incremental", "init", "minimax", "pl", "panoptic"]


def _imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
    return found


def _modules(folder: str):
    return sorted((SRC / folder).rglob("*.py"))


@pytest.mark.parametrize("folder", FAMILIES + ["data", "reporting"])
def test_files_are_written_through_tenfold_io(folder):
    bad = [str(p.relative_to(SRC)) for p in _modules(folder) if "tenfold.engine.checkpoint" in _imports(p)]
    assert not bad, f"import the atomic writers from tenfold.io: {bad}"


def test_data_does_not_import_method_families():
    bad = [(str(p.relative_to(SRC)), m) for p in _modules("data") for m in _imports(p)
           if any(m == f"tenfold.{f}" or m.startswith(f"tenfold.{f}.") for f in FAMILIES)]
    assert not bad


def test_benchmarks_do_not_import_experiments():
    bad = [(str(p.relative_to(SRC)), m) for p in _modules("benchmarks") for m in _imports(p)
           if m.startswith("tenfold.experiments")]
    assert not bad


def test_io_needs_only_the_standard_library():
    assert not {m for m in _imports(SRC / "io.py") if m.split(".")[0] in ("torch", "numpy", "tenfold")}


def test_old_import_paths_keep_working():
    from tenfold.benchmarks.common import fixed_threads as old_threads
    from tenfold.data import panoptic_codec
    from tenfold.engine import fixed_threads
    from tenfold.engine.checkpoint import atomic_write_bytes, atomic_write_json, atomic_write_text
    from tenfold.experiments.nio import shapes_cnn as old_cnn
    from tenfold.init.models import shapes_cnn
    from tenfold.io import atomic_write_json as new_json
    from tenfold.panoptic import format as fmt

    assert old_threads is fixed_threads and old_cnn is shapes_cnn and atomic_write_json is new_json
    assert atomic_write_bytes and atomic_write_text
    for name in ("write_gt", "read_gt", "decode_uids", "encode_ids", "write_prediction", "read_prediction"):
        assert getattr(fmt, name) is getattr(panoptic_codec, name)
