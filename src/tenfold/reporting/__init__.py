"""Run folders, results, the evidence contract (paper claims and checks), figures and the report."""

from tenfold.reporting.claims import Check, ClaimError, PaperClaim
from tenfold.reporting.results import Result, markdown_table

__all__ = ["Check", "ClaimError", "PaperClaim", "Result", "markdown_table"]
