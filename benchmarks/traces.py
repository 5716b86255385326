"""A self-contained HTML page per LLM policy run: what the model saw and said for each user, target marked.

Per user: profile, the preference summary before and after each reflection, the model's answer (rationale and
ranking text), and the final ranking with the held-out target highlighted; at the top, parse-status counts.
"""

from __future__ import annotations

from html import escape
from pathlib import Path

from starec_env.files import write_text

STYLE = """body{font:14px/1.45 system-ui,sans-serif;margin:2em auto;max-width:1000px;color:#222}
section{border:1px solid #ddd;border-radius:6px;padding:.6em 1em;margin:1em 0}
h1{font-size:1.4em}h2{font-size:1.05em;margin:.2em 0}pre{white-space:pre-wrap;background:#f6f6f6;padding:.5em}
ol li.target{background:#ffe9a8;font-weight:600}table{border-collapse:collapse}td,th{border:1px solid #ddd;padding:4px}
.meta{color:#666}"""


def write_trace_report(path: Path, title: str, traces: list[dict], targets: dict[int, int], item_text,
                       usage: dict) -> Path:
    """`targets` maps user → held-out item; `item_text` names an item id."""
    counts = "".join(f"<tr><th>{escape(str(k))}</th><td>{escape(_number(v))}</td></tr>"
                     for k, v in sorted(usage.items()))
    sections = [_user_section(trace, targets.get(trace["user"]), item_text) for trace in traces]
    page = (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{escape(title)}</title>"
            f"<style>{STYLE}</style></head><body><h1>{escape(title)}</h1>"
            f"<table class='usage'>{counts}</table>{''.join(sections)}</body></html>")
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text(path, page)
    return path


def _user_section(trace: dict, target: int | None, item_text) -> str:
    ranking = trace["ranking"]
    rank = ranking.index(target) + 1 if target in ranking else None
    items = "".join(f"<li class='{'target' if item == target else ''}'>{escape(item_text(item))}"
                    f"{' ★ target' if item == target else ''}</li>" for item in ranking)
    parts = [f"<h2>user {trace['user']} — target at rank {rank}</h2>",
             f"<p class='meta'>{escape(trace.get('profile') or 'no profile')}</p>"]
    for reflection in trace.get("reflections") or []:
        parts.append("<table><tr><th>summary before</th><td>{}</td></tr><tr><th>reflection ({})</th><td>{}</td></tr>"
                     "<tr><th>summary after</th><td>{}</td></tr></table>".format(
                         escape(reflection["before"]), escape(reflection["status"]),
                         escape(reflection["reflection"]), escape(reflection["after"])))
    if trace.get("summary"):
        parts.append(f"<p><b>summary used for ranking:</b> {escape(trace['summary'])}</p>")
    if trace.get("answer"):
        parts.append(f"<pre>{escape(trace['answer'])}</pre>")
    parts.append(f"<ol>{items}</ol>")
    return f"<section>{''.join(parts)}</section>"


def _number(value) -> str:
    return f"{value:.1f}" if isinstance(value, float) else str(value)
