"""Under CI=true an oracle test whose reference library is missing fails instead of skipping."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ORACLES = '''
import pytest

missing = pytest.importorskip("no_such_reference_library_xyz")
'''
MARKED = '''
import pytest

@pytest.mark.oracle
def test_needs_reference():
    pytest.importorskip("no_such_reference_library_xyz")

def test_plain_skip_is_fine():
    pytest.skip("not an oracle")
'''


@pytest.mark.parametrize("ci, expect_failed", [("true", True), ("", False)])
def test_skipped_oracles_fail_only_in_ci(tmp_path, ci, expect_failed):
    shutil.copy(Path(__file__).with_name("conftest.py"), tmp_path / "conftest.py")
    (tmp_path / "pytest.ini").write_text("[pytest]\nmarkers =\n    oracle: reference library\n")
    (tmp_path / "test_oracle_module.py").write_text(ORACLES)
    (tmp_path / "test_marked.py").write_text(MARKED)
    env = {**os.environ, "CI": ci}
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           "--continue-on-collection-errors", str(tmp_path)],
                          cwd=tmp_path, env=env, capture_output=True, text=True)
    tail = proc.stdout.strip().splitlines()[-1]
    if expect_failed:
        assert proc.returncode == 1 and "1 failed" in tail and "1 error" in tail and "1 skipped" in tail, proc.stdout
        assert "oracle tests are required in CI" in proc.stdout
    else:
        assert proc.returncode == 0 and "3 skipped" in tail, proc.stdout
