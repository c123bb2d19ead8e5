"""What an experiment returns: metrics, per-seed samples (what its claims read), figures, tables and notes."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class Result:
    """The outcome of one experiment run; written to ``results.json`` by the runner.

    ``samples`` map a metric to its per-seed values (what a :class:`~tenfold.reporting.PaperClaim`
    reads: mean and spread); ``figures`` are paths relative to the run folder; ``tables`` map a title to
    a Markdown table; ``key_metric`` names the metric shown in the report's summary table (a metric, or a
    per-seed sample shown as its mean and spread; when a config leaves it out, the first metric is shown).
    """

    metrics: dict[str, float] = field(default_factory=dict)
    samples: dict[str, list[float]] = field(default_factory=dict)
    figures: list[str] = field(default_factory=list)
    tables: dict[str, str] = field(default_factory=dict)
    notes: str = ""
    key_metric: str | None = None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["metrics"] = {k: float(v) for k, v in self.metrics.items()}
        data["samples"] = {k: [float(x) for x in v] for k, v in self.samples.items()}
        return data


def markdown_table(rows: list[dict[str, Any]], columns: list[str] | None = None, floatfmt: str = ".4g") -> str:
    """Render rows of dicts as a Markdown table (numbers formatted with ``floatfmt``)."""
    if not rows:
        return ""
    columns = columns or list(rows[0].keys())

    def fmt(v: Any) -> str:
        if isinstance(v, bool):
            return "yes" if v else "no"
        if isinstance(v, float):
            return format(v, floatfmt)
        return escape_cell(str(v))

    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    lines += ["| " + " | ".join(fmt(r.get(c, "")) for c in columns) + " |" for r in rows]
    return "\n".join(lines)


def escape_cell(text: str) -> str:
    """A table cell's text with Markdown's column separator escaped and line breaks folded."""
    return text.replace("\\|", "|").replace("|", "\\|").replace("\r", " ").replace("\n", " ")
