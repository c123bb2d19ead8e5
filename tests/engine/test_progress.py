"""Progress bars: cleared from the terminal when an error leaves them, kept after a finished run."""

import io

from rich.console import Console

from tenfold.engine import progress


def _render(monkeypatch, fail: bool) -> str:
    buf = io.StringIO()
    monkeypatch.setenv("TENFOLD_PROGRESS", "1")
    monkeypatch.setattr(progress, "console", Console(file=buf, force_terminal=True, width=80))
    try:
        for i in progress.track(range(3), "epochs"):
            if fail and i == 1:
                raise ValueError("boom")
    except ValueError:
        pass
    return buf.getvalue()


def test_bars_are_cleared_before_an_error_line(monkeypatch):
    failed, finished = _render(monkeypatch, fail=True), _render(monkeypatch, fail=False)
    assert "epochs" in failed and "epochs" in finished
    # rich restores the cursor over a transient display: the last write erases the bar's line
    assert failed.rstrip("\n").endswith("\x1b[2K")
    assert not finished.rstrip("\n").endswith("\x1b[2K")
