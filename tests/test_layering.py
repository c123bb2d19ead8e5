"""Layering measured from the imports: each room has one job.

- method families and data write files through ``tenfold.io``, never through ``engine/checkpoint.py``;
- data never imports a method family; benchmarks and method families never import a paper;
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


@pytest.mark.parametrize("folder", FAMILIES + ["benchmarks", "data", "engine", "reporting"])
def test_library_does_not_import_papers(folder):
    """Papers compose the library; a family (or the machinery under it) that imports a paper's folder would
    make the library depend on one paper's protocol."""
    bad = [(str(p.relative_to(SRC)), m) for p in _modules(folder) for m in _imports(p)
           if m.startswith("tenfold.papers") or (m.startswith("tenfold.experiments") and folder != "reporting")]
    assert not bad


def test_papers_do_not_import_each_other():
    """One folder per paper: a paper's code reaches another paper only through the library."""
    bad = []
    for folder in sorted((SRC / "papers").iterdir()):
        if folder.is_dir() and not folder.name.startswith("_"):
            for p in folder.rglob("*.py"):
                for m in _imports(p):
                    if m.startswith("tenfold.papers.") and m.split(".")[2] != folder.name:
                        bad.append((str(p.relative_to(SRC)), m))
    assert not bad


def test_io_needs_only_the_standard_library():
    assert not {m for m in _imports(SRC / "io.py") if m.split(".")[0] in ("torch", "numpy", "tenfold")}


def test_old_import_paths_keep_working():
    from tenfold.benchmarks.common import fixed_threads as old_threads
    from tenfold.data import panoptic_codec
    from tenfold.engine import fixed_threads
    from tenfold.engine.checkpoint import atomic_write_bytes, atomic_write_json, atomic_write_text
    from tenfold.io import atomic_write_json as new_json
    from tenfold.panoptic import format as fmt

    assert old_threads is fixed_threads and atomic_write_json is new_json
    assert atomic_write_bytes and atomic_write_text
    for name in ("write_gt", "read_gt", "decode_uids", "encode_ids", "write_prediction", "read_prediction"):
        assert getattr(fmt, name) is getattr(panoptic_codec, name)
