"""Run folders, results, Markdown tables, figures and the reproduce report."""

from tenfold.reporting.results import Claim, Result, markdown_table

__all__ = ["Claim", "Result", "markdown_table"]
