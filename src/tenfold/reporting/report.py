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
from tenfold.reporting.claims import FLAGGED, interval_text, tier_of, verdict
from tenfold.reporting.results import markdown_table


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _key_metric(entry: dict[str, Any]) -> str:
    metrics, samples = entry.get("metrics") or {}, entry.get("samples") or {}
    key = entry.get("key_metric")
    if key not in metrics and key not in samples:  # none named, or a config left it out: the first metric
        key = next(iter(metrics), None)
    if key in metrics:
        return f"{key} = {_fmt(metrics[key])}"
    values = [float(v) for v in samples.get(key) or []]
    if not values:
        return ""
    mean = sum(values) / len(values)
    if len(values) == 1:
        return f"{key} = {_fmt(mean)}"
    std = (sum((v - mean) ** 2 for v in values) / (len(values) - 1)) ** 0.5
    return f"{key} = {_fmt(mean)} ± {std:.2g} (n={len(values)})"


def _counts(entries: list[dict[str, Any]]) -> dict[str, int]:
    """Verdict counts over the finished experiments' statements, paper claims and checks apart."""
    counts: dict[str, int] = {}
    for e in entries:
        if e.get("status") != "ok":
            continue
        for c in e.get("claims", []):
            key = f"{c.get('kind', 'paper')}:{verdict(c)}"
            counts[key] = counts.get(key, 0) + 1
    return counts


def _claims_cell(entry: dict[str, Any]) -> str:
    """The summary table's cell: paper claims reproduced (and how the others ended), checks passing."""
    claims = entry.get("claims") or []
    if entry.get("status") != "ok":
        return "—"
    if not claims:
        return "none"
    parts = []
    paper = [c for c in claims if c.get("kind") == "paper"]
    if paper:
        words = [verdict(c) for c in paper]
        ok = sum(w in ("reproduced", "reproduced (ablation not run)") for w in words)
        others = [f"{words.count(w)} {w}" for w in ("inconclusive", "not falsified", "holds (ablation = baseline)",
                                                     "not testable", "ablation failed") if w in words]
        parts.append(f"paper {ok}/{len(paper)} reproduced" + (f", {', '.join(others)}" if others else ""))
    checks = [c for c in claims if c.get("kind") == "check" and not c.get("not_checked")]
    if checks:
        parts.append(f"checks {sum(bool(c['holds']) for c in checks)}/{len(checks)} pass")
    return "; ".join(parts)


def _value(c: dict[str, Any], prefix: str = "") -> str:
    """``mean ± std (n=5) 95% [lo, hi]`` for a per-seed claim, the plain value for a single run."""
    value = c.get(f"{prefix}value")
    if value is None:
        return "—"
    std, n = c.get(f"{prefix}std", 0.0), c.get(f"{prefix}n") or c.get("n", 1)
    if not n or n <= 1:
        return _fmt(float(value))
    ci = interval_text(c, prefix)
    return f"{_fmt(float(value))} ± {_fmt(float(std))} (n={n})" + (f" 95% {ci}" if ci else "")


def _ablated(c: dict[str, Any]) -> str:
    if c.get("ablation_error"):
        return f"ablation crashed: {c['ablation_error'][:80]}"
    if c.get("ablation_skipped"):
        return c["ablation_skipped"]
    if c.get("ablation_in_run"):
        return "trained in this run (paired per seed: the claim's value is the difference)"
    if "ablated_value" not in c:
        return "not run (--falsify)"
    if c.get("ablation_equals_baseline"):
        return f"{_value(c, 'ablated_')} → ablation = baseline (by construction; no evidence)"
    word = {"holds": "holds", "fails": "fails", "straddles": "inconclusive"}.get(
        c.get("ablated_side", ""), "holds" if c["ablated_holds"] else "fails")
    return f"{_value(c, 'ablated_')} → {word}"


def _verdict_cell(c: dict[str, Any]) -> str:
    """The verdict, with the seed count that would decide an inconclusive claim."""
    word = verdict(c)
    if word == "not testable":
        return _mark(word) + f" ({c['not_testable']})"
    if word == "inconclusive" and c.get("side") == "straddles":
        need = c.get("seeds_needed")
        word += f" (about {need} seeds would decide)" if need else " (the mean sits on the threshold)"
    return _mark(word)


def _mark(text: str) -> str:
    """Bold the verdicts a reader must not miss."""
    return f"**{text}**" if text in FLAGGED or text.startswith("inconclusive") else text


def summary_rows(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for e in entries:
        rows.append({"paper": paper(e.get("paper", "")).title if e.get("paper") else "",
                     "experiment": f"[{e['experiment']}](#{slug(e['experiment'])})", "key metric": _key_metric(e),
                     "claims": _claims_cell(e), "status": e.get("status", "?"),
                     "wall (s)": f"{e.get('wall_s', 0):.1f}"})
    return rows


def paper_claim_rows(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per paper claim: ours, the threshold, the paper's figure, the value without the mechanism."""
    rows = []
    for e in entries:
        if e.get("status") != "ok":
            continue
        for c in e.get("claims", []):
            if c.get("kind") != "paper":
                continue
            rows.append({"experiment": e["experiment"], "claim": c["name"], "ours": _value(c),
                         "threshold": c["threshold"], "paper": c.get("paper", ""),
                         "without the mechanism": f"`{' '.join(c.get('ablation', []))}`: {_ablated(c)}",
                         "verdict": _verdict_cell(c)})
    return rows


def check_rows(entries: list[dict[str, Any]], kinds: tuple[str, ...] = ("check",)) -> list[dict[str, Any]]:
    """Checks; a crashed experiment is one row."""
    rows = []
    for e in entries:
        if e.get("status") != "ok":
            if kinds == ("check",):
                rows.append({"experiment": e["experiment"], "statement": "(experiment failed)", "value": "—",
                             "threshold": "—", "result": "**FAILED**"})
            continue
        for c in e.get("claims", []):
            if c.get("kind") in kinds:
                rows.append({"experiment": e["experiment"], "statement": c["name"], "value": _value(c),
                             "threshold": c["threshold"], "result": _mark(verdict(c))})
    return rows


def slug(text: str) -> str:
    """The anchor of a heading, as GitHub makes it (lower case, spaces to dashes, punctuation dropped)."""
    return re.sub(r"[^a-z0-9 _-]", "", text.lower()).strip().replace(" ", "-")


def _link(path: str, out_dir: Path) -> str:
    p = Path(path)
    try:
        p = p.relative_to(out_dir)
    except ValueError:
        pass
    return p.as_posix()


def render_markdown(entries: list[dict[str, Any]], out_dir: Path, *, title: str, preset: str,
                    environment: dict[str, str], total_wall: float, falsified: bool = False) -> str:
    """The report as Markdown; figure and run-folder links are relative to ``out_dir``."""
    counts = _counts(entries)
    n_paper = sum(v for k, v in counts.items() if k.startswith("paper:"))
    n_repro = counts.get("paper:reproduced", 0) + counts.get("paper:reproduced (ablation not run)", 0)
    n_notfals = counts.get("paper:not falsified", 0) + counts.get("paper:ablation failed", 0)
    n_notrep = counts.get("paper:not reproduced", 0)
    n_incon = counts.get("paper:inconclusive", 0)
    n_base = counts.get("paper:holds (ablation = baseline)", 0)
    n_gated = counts.get("paper:not testable", 0)
    n_check = sum(v for k, v in counts.items() if k.startswith("check:") and k != "check:not checked at this tier")
    n_pass = counts.get("check:pass", 0)
    failed = [e["experiment"] for e in entries if e.get("status") != "ok"]
    paper_line = (f"paper claims: {n_repro}/{n_paper} reproduced, {n_notrep} not reproduced, {n_incon} inconclusive"
                  + (f", {n_notfals} not falsified, {n_base} with an ablation equal to the baseline" if falsified
                     else " (ablations not run: use --falsify)")
                  + (f", {n_gated} not testable (a claim they require does not hold)" if n_gated else ""))
    lines = [f"# {title}", "",
             f"Generated {_dt.datetime.now().strftime('%Y-%m-%d %H:%M')} · preset `{preset}` · "
             f"{len(entries)} experiments · {paper_line} · checks: {n_pass}/{n_check} pass"
             + f" · {len(failed)} failed · experiments' wall time {experiment_seconds(entries):.0f} s "
             f"(this invocation {total_wall:.0f} s)", ""]
    if tier_of(preset) == "quick":
        lines += ["> **Quick tier: a smoke run, not evidence.** Budgets are sized for a demo and CI (about 15 s an "
                  "experiment); verdicts here say whether the code runs end to end, not whether a paper's effect "
                  "holds. The evidence is `tenfold reproduce --preset standard --falsify`.", ""]
    if failed:
        lines += [f"**Failed experiments:** {', '.join(failed)} (errors below).", ""]
    lines += ["A *paper claim* is a paper's effect measured at this scale against a tuned baseline, judged from "
              "the 95% interval of its per-seed values: **reproduced** when the interval lies on the claim's "
              "side of the threshold and the interval *without the mechanism* (the same experiment rerun with "
              "the listed `--set` overrides, which remove only what the claim tests) on the other side; **not "
              "reproduced** when the interval lies on the wrong side, an honest result at this scale; **not "
              "falsified** when the claim still holds without its mechanism; **inconclusive** otherwise, with "
              "the seed count that would decide. An ablation that equals the baseline by construction is "
              "marked *ablation = baseline* and adds no evidence. A *check* is a property of the implementation "
              "(it holds by construction when the code is right). Thresholds come from each experiment's config, "
              "fixed before the run; their sources are in the sections below.", ""]
    by_paper: dict[str, list[dict[str, Any]]] = {}
    for e in entries:
        by_paper.setdefault(e.get("paper", ""), []).append(e)
    toc = ["## Contents", "", "- [Summary](#summary)", "- [Paper claims](#paper-claims)", "- [Checks](#checks)"]
    for key, group in by_paper.items():
        toc.append(f"- [{paper(key).title}](#{slug(paper(key).title)})")
        toc += [f"  - [{e['experiment']}](#{slug(e['experiment'])})" for e in group]
    toc.append("- [Environment](#environment)")
    lines += toc + [""]
    lines += ["## Summary", "", markdown_table(summary_rows(entries)), "",
              "## Paper claims", "", markdown_table(paper_claim_rows(entries)) or "No paper claims.", "",
              "## Checks", "", markdown_table(check_rows(entries)) or "No checks.", ""]

    for key, group in by_paper.items():
        p = paper(key)
        lines += [f"## {p.title}", ""]
        if p.arxiv:
            lines += [f"arXiv:{p.arxiv} · docs: `docs/{p.docs}`", ""]
        for e in group:
            lines += [f"### {e['experiment']}", ""]
            if e.get("description"):
                lines += [e["description"], ""]
            run_link = f"[{e.get('run_dir', '')}]({_link(e.get('run_dir', '.'), out_dir)})" if e.get("run_dir") \
                else "—"
            if e.get("status") != "ok":
                lines += [f"**Status: {e.get('status')}.** Error: `{e.get('error', 'unknown')}`", "",
                          f"Run folder: {run_link}", ""]
                continue
            if e.get("notes"):
                lines += [e["notes"], ""]
            if e.get("claims"):
                lines += [markdown_table([_section_row(c, out_dir) for c in e["claims"]]), ""]
            metrics = e.get("metrics") or {}
            if metrics:
                lines += ["<details><summary>metrics</summary>", "",
                          markdown_table([{"metric": k, "value": _fmt(float(v))} for k, v in metrics.items()]),
                          "", "</details>", ""]
            for table_title, table in (e.get("tables") or {}).items():
                lines += [f"**{table_title}**", "", table, ""]
            run_dir = Path(e.get("run_dir", "."))
            for fig in e.get("figures", []):
                lines += [f"![{e['experiment']}: {Path(fig).stem}]({_link(str(run_dir / fig), out_dir)})", ""]
            for w in e.get("warnings", []):
                lines += [f"> warning: {w}", ""]
            lines += [f"Run folder: {run_link} · wall time {e.get('wall_s', 0):.1f} s", ""]
    lines += ["## Environment", "", markdown_table([{"item": k, "value": v} for k, v in environment.items()]), ""]
    return "\n".join(lines)


def _section_row(c: dict[str, Any], out_dir: Path) -> dict[str, Any]:
    """A statement in its experiment's section: with the threshold's source and the ablation's run."""
    row = {"kind": c.get("kind", "paper"), "claim": c["name"], "value": _value(c),
           "threshold": c["threshold"], "source of the threshold": c.get("source", "")}
    if c.get("kind") == "paper":
        ablated = _ablated(c)
        if c.get("ablation_run_dir"):
            ablated = f"[{ablated}]({_link(c['ablation_run_dir'], out_dir)})"
        row |= {"paper": c.get("paper", ""), "without the mechanism": ablated}
    row["result"] = _verdict_cell(c) if c.get("kind") == "paper" else _mark(verdict(c))
    return row


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
    body = re.sub(r"<(h[23])>(.*?)</h[23]>",
                  lambda m: f'<{m.group(1)} id="{slug(html.unescape(re.sub("<[^>]+>", "", m.group(2))))}">'
                            f"{m.group(2)}</{m.group(1)}>", body)
    for word in FLAGGED + ("FAILED",):
        body = body.replace(f"<strong>{word}</strong>", f'<strong style="color:#b00">{word}</strong>')
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{_CSS}</style></head><body>{body}</body></html>\n")


def write_report(entries: list[dict[str, Any]], out_dir: str | Path, *, preset: str, environment: dict[str, str],
                 total_wall: float, title: str = "Tenfold reproduction report", falsified: bool = False) -> Path:
    """Write ``report.md`` and ``report.html`` into ``out_dir``; returns the Markdown path."""
    out_dir = Path(out_dir)
    md = render_markdown(entries, out_dir, title=title, preset=preset, environment=environment,
                         total_wall=total_wall, falsified=falsified)
    path = atomic_write_text(out_dir / "report.md", md)
    atomic_write_text(out_dir / "report.html", render_html(md, out_dir, title))
    return path


README_START = "<!-- results:start -->"
README_END = "<!-- results:end -->"


def experiment_seconds(entries: list[dict[str, Any]]) -> float:
    """Sum of the experiments' own wall times (also right for a report rebuilt with --resume)."""
    return float(sum(e.get("wall_s", 0.0) for e in entries))


def readme_table(entries: list[dict[str, Any]], report_dir: str, total_wall: float, falsify: bool = False,
                 preset: str = "quick") -> str:
    """The README's results block: one row per experiment with its claims, generated from a run."""
    rows = []
    for e in entries:
        claims = e.get("claims") or []
        if e.get("status") != "ok":
            cell = f"**failed**: {e.get('error', '')[:80]}"
        else:
            flagged = [f"{c['name']} ({verdict(c)})" for c in claims if verdict(c) in FLAGGED]
            cell = _claims_cell(e) + (f"; **{'; '.join(flagged)}**" if flagged else "")
        p = paper(e.get("paper", ""))
        rows.append({"paper": p.short or p.title, "experiment": e["experiment"],
                     "key metric": _key_metric(e), "claims": cell, "wall (s)": f"{e.get('wall_s', 0):.0f}"})
    stamp = _dt.datetime.now().strftime("%Y-%m-%d")
    command = f"tenfold reproduce --preset {preset}{' --falsify' if falsify else ''} --update-readme README.md"
    commits = sorted({(e.get("git") or {}).get("commit") or "" for e in entries} - {""})
    dirty = any((e.get("git") or {}).get("dirty") for e in entries)
    at = f" at commit {', '.join(c[:7] for c in commits)}{' (with local changes)' if dirty else ''}" if commits else ""
    smoke = (" **Quick tier: a smoke run, not evidence.**" if tier_of(preset) == "quick" else "")
    return (f"Generated by `{command}` on {stamp}{at} "
            f"(experiments' wall time {experiment_seconds(entries):.0f} s on {_threads()} CPU threads; "
            f"full report: `{report_dir}/report.html`).{smoke}\n\n" + markdown_table(rows))


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
