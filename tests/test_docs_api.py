"""docs/api.md is user code: every ```python block runs as it is, in a fresh interpreter with the working
directory in a temporary folder, and the page has one block per method family."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "api.md"
FAMILIES = ["tenfold.tuning", "tenfold.contrastive", "tenfold.minimax", "tenfold.snn", "tenfold.incremental",
            "tenfold.snn.spide", "tenfold.panoptic", "tenfold.pl", "tenfold.init"]


def blocks() -> list[tuple[str, str]]:
    """``(heading, code)`` of every ```python block, named by the ## heading above it."""
    found, heading = [], "top"
    for part in re.split(r"^(## .*|```python\n(?:.*\n)*?```)$", PAGE.read_text(), flags=re.M):
        if part.startswith("## "):
            heading = part[3:].split("(")[0].strip()
        elif part.startswith("```python"):
            found.append((heading, part[len("```python\n"):-3]))
    return found


def test_one_example_per_family_each_starting_from_its_import():
    found = blocks()
    assert len(found) == 10
    for heading, code in found:
        first = code.lstrip().splitlines()[0]
        assert first.startswith(("import ", "from ")), f"{heading}: the example must start from its import"
    imports = "\n".join(code for _, code in found)
    for family in FAMILIES:
        assert re.search(rf"^(from {re.escape(family)}[ .]|import .*{re.escape(family)}\b)", imports, re.M), family
    assert 'tt.apply(vit, "lion"' in imports


@pytest.mark.slow  # a fresh interpreter per block: ~4 s of CPU each (torch, timm imports)
@pytest.mark.parametrize("heading,code", blocks(), ids=[h for h, _ in blocks()])
def test_example_runs(heading, code, tmp_path):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]),
               OMP_NUM_THREADS="1")
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, f"docs/api.md, {heading}:\n{done.stderr[-3000:]}"
