"""The reproduce report: ``report.md`` and a self-contained ``report.html`` built from results.json files.

Everything in the report is read from the run folders of that run; nothing is typed by hand.
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import re
from pathlib import Path
from typing import Any

from tenfold.io import atomic_write_text
from tenfold.reporting.papers import paper
from tenfold.reporting.results import markdown_table


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _key_metric(entry: dict[str, Any]) -> str:
    metrics = entry.get("metrics") or {}
    key = entry.get("key_metric") or (next(iter(metrics)) if metrics else None)
    if key is None or key not in metrics:
        return ""
    return f"{key} = {_fmt(metrics[key])}"


def _claims_cell(entry: dict[str, Any]) -> str:
    claims = entry.get("claims") or []
    if entry.get("status") != "ok":
        return "—"
    held = sum(bool(c["holds"]) for c in claims)
    return f"{held}/{len(claims)} hold" if claims else "none"


def summary_rows(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for e in entries:
        rows.append({"paper": paper(e.get("paper", "")).title if e.get("paper") else "",
                     "experiment": e["experiment"], "key metric": _key_metric(e), "claims": _claims_cell(e),
                     "status": e.get("status", "?"), "wall (s)": f"{e.get('wall_s', 0):.1f}"})
    return rows


def claim_rows(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for e in entries:
        if e.get("status") != "ok":
            rows.append({"experiment": e["experiment"], "claim": "(experiment failed)", "value": "—",
                         "threshold": "—", "result": "**FAILED**"})
            continue
        for c in e.get("claims", []):
            rows.append({"experiment": e["experiment"], "claim": c["name"], "value": _fmt(float(c["value"])),
                         "threshold": c["threshold"], "result": "pass" if c["holds"] else "**fail**"})
    return rows


def render_markdown(entries: list[dict[str, Any]], out_dir: Path, *, title: str, preset: str,
                    environment: dict[str, str], total_wall: float) -> str:
    """The report as Markdown; figure links are relative to ``out_dir``."""
    n_claims = sum(len(e.get("claims", [])) for e in entries if e.get("status") == "ok")
    n_hold = sum(bool(c["holds"]) for e in entries if e.get("status") == "ok" for c in e.get("claims", []))
    failed = [e["experiment"] for e in entries if e.get("status") != "ok"]
    lines = [f"# {title}", "",
             f"Generated {_dt.datetime.now().strftime('%Y-%m-%d %H:%M')} · preset `{preset}` · "
             f"{len(entries)} experiments · {n_hold}/{n_claims} claims hold · "
             f"{len(failed)} failed · experiments' wall time {experiment_seconds(entries):.0f} s "
             f"(this invocation {total_wall:.0f} s)", ""]
    if failed:
        lines += [f"**Failed experiments:** {', '.join(failed)} (errors below).", ""]
    lines += ["## Summary", "", markdown_table(summary_rows(entries)), "",
              "## Claims", "", markdown_table(claim_rows(entries)) or "No claims.", ""]

    by_paper: dict[str, list[dict[str, Any]]] = {}
    for e in entries:
        by_paper.setdefault(e.get("paper", ""), []).append(e)
    for key, group in by_paper.items():
        p = paper(key)
        lines += [f"## {p.title}", ""]
        if p.arxiv:
            lines += [f"arXiv:{p.arxiv} · docs: `docs/{p.docs}`", ""]
        for e in group:
            lines += [f"### {e['experiment']}", ""]
            if e.get("description"):
                lines += [e["description"], ""]
            if e.get("status") != "ok":
                lines += [f"**Status: {e.get('status')}.** Error: `{e.get('error', 'unknown')}`", ""]
                continue
            if e.get("notes"):
                lines += [e["notes"], ""]
            if e.get("claims"):
                lines += [markdown_table([{"claim": c["name"], "value": _fmt(float(c["value"])),
                                           "threshold": c["threshold"],
                                           "result": "pass" if c["holds"] else "**fail**"}
                                          for c in e["claims"]]), ""]
            metrics = e.get("metrics") or {}
            if metrics:
                lines += ["<details><summary>metrics</summary>", "",
                          markdown_table([{"metric": k, "value": _fmt(float(v))} for k, v in metrics.items()]),
                          "", "</details>", ""]
            for table_title, table in (e.get("tables") or {}).items():
                lines += [f"**{table_title}**", "", table, ""]
            run_dir = Path(e.get("run_dir", "."))
            for fig in e.get("figures", []):
                rel = (run_dir / fig)
                try:
                    rel = rel.relative_to(out_dir)
                except ValueError:
                    pass
                lines += [f"![{e['experiment']}: {Path(fig).stem}]({rel.as_posix()})", ""]
            for w in e.get("warnings", []):
                lines += [f"> warning: {w}", ""]
            lines += [f"Run folder: `{e.get('run_dir', '')}` · wall time {e.get('wall_s', 0):.1f} s", ""]
    lines += ["## Environment", "", markdown_table([{"item": k, "value": v} for k, v in environment.items()]), ""]
    return "\n".join(lines)


_CSS = """body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;
color:#222;line-height:1.45}table{border-collapse:collapse;margin:.5em 0 1em;font-size:.92em}
th,td{border:1px solid #ccc;padding:.3em .6em;text-align:left}th{background:#f3f3f3}
img{max-width:100%;border:1px solid #eee;margin:.5em 0}code{background:#f5f5f5;padding:0 .2em}
h2{border-bottom:2px solid #ddd;padding-bottom:.2em;margin-top:1.6em}details{margin:.5em 0}"""


def render_html(markdown: str, out_dir: Path, title: str) -> str:
    """Markdown -> one self-contained HTML page with every figure embedded as a data URI."""
    from markdown_it import MarkdownIt

    body = MarkdownIt("commonmark", {"html": True}).enable("table").render(markdown)

    def embed(match: re.Match) -> str:
        src = html.unescape(match.group(1))
        path = out_dir / src
        if not path.is_file():
            return match.group(0)
        data = base64.b64encode(path.read_bytes()).decode()
        return f'src="data:image/png;base64,{data}"'

    body = re.sub(r'src="([^"]+\.png)"', embed, body)
    body = body.replace("<strong>fail</strong>", '<strong style="color:#b00">fail</strong>')
    body = body.replace("<strong>FAILED</strong>", '<strong style="color:#b00">FAILED</strong>')
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{_CSS}</style></head><body>{body}</body></html>\n")


def write_report(entries: list[dict[str, Any]], out_dir: str | Path, *, preset: str, environment: dict[str, str],
                 total_wall: float, title: str = "Tenfold reproduction report") -> Path:
    """Write ``report.md`` and ``report.html`` into ``out_dir``; returns the Markdown path."""
    out_dir = Path(out_dir)
    md = render_markdown(entries, out_dir, title=title, preset=preset, environment=environment,
                         total_wall=total_wall)
    path = atomic_write_text(out_dir / "report.md", md)
    atomic_write_text(out_dir / "report.html", render_html(md, out_dir, title))
    return path


README_START = "<!-- results:start -->"
README_END = "<!-- results:end -->"


def experiment_seconds(entries: list[dict[str, Any]]) -> float:
    """Sum of the experiments' own wall times (also right for a report rebuilt with --resume)."""
    return float(sum(e.get("wall_s", 0.0) for e in entries))


def readme_table(entries: list[dict[str, Any]], report_dir: str, total_wall: float) -> str:
    """The README's results block: one row per experiment with its claims, generated from a run."""
    rows = []
    for e in entries:
        claims = e.get("claims") or []
        if e.get("status") != "ok":
            verdict = f"**failed**: {e.get('error', '')[:80]}"
        else:
            failing = [c["name"] for c in claims if not c["holds"]]
            verdict = f"{len(claims) - len(failing)}/{len(claims)} hold" + (
                f"; **fail**: {'; '.join(failing)}" if failing else "")
        p = paper(e.get("paper", ""))
        rows.append({"paper": p.short or p.title, "experiment": e["experiment"],
                     "key metric": _key_metric(e), "claims": verdict, "wall (s)": f"{e.get('wall_s', 0):.0f}"})
    stamp = _dt.datetime.now().strftime("%Y-%m-%d")
    return (f"Generated by `tenfold reproduce --quick --update-readme README.md` on {stamp} "
            f"(experiments' wall time {experiment_seconds(entries):.0f} s on {_threads()} CPU threads; "
            f"full report: `{report_dir}/report.html`).\n\n" + markdown_table(rows))


def _threads() -> int:
    import torch

    return torch.get_num_threads()


def update_readme(readme: str | Path, block: str) -> Path:
    """Replace the text between the results markers of ``readme`` with ``block``."""
    from tenfold.errors import ConfigError

    readme = Path(readme)
    text = readme.read_text() if readme.is_file() else ""
    if README_START not in text or README_END not in text:
        raise ConfigError(f"{readme} has no '{README_START}' ... '{README_END}' markers to put the results table between")
    head, rest = text.split(README_START, 1)
    _, tail = rest.split(README_END, 1)
    return atomic_write_text(readme, f"{head}{README_START}\n{block}\n{README_END}{tail}")
