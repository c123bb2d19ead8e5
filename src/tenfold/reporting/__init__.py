"""Run folders, results, the evidence contract (paper claims and checks), figures and the report."""

from tenfold.reporting.claims import Check, ClaimError, PaperClaim
from tenfold.reporting.results import Claim, Result, markdown_table

__all__ = ["Check", "Claim", "ClaimError", "PaperClaim", "Result", "markdown_table"]
