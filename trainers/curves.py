"""Training curves from a Hugging Face trainer's log history (one CSV and one PNG per stage), and the validation table
of the stages side by side."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from starec_env.files import atomic_path, write_text  # noqa: E402


def write_curves(log_history: list[dict], out: Path, name: str, keys: tuple[str, ...]) -> pd.DataFrame:
    """`keys` present in the log (e.g. loss, reward, kl) against the step; returns the frame written to CSV."""
    frame = pd.DataFrame([row for row in log_history if "step" in row])
    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(out / f"{name}.csv") as scratch:
        frame.to_csv(scratch, index=False)
    present = [key for key in keys if key in frame and frame[key].notna().any()]
    if present:
        figure, axes = plt.subplots(1, len(present), figsize=(4 * len(present), 3), squeeze=False)
        for axis, key in zip(axes[0], present):
            rows = frame[frame[key].notna()]
            axis.plot(rows["step"], rows[key], marker=".")
            axis.set_title(f"{name}: {key}")
            axis.set_xlabel("optimizer step")
        figure.tight_layout()
        with atomic_path(out / f"{name}.png") as scratch:
            figure.savefig(scratch, dpi=120)
        plt.close(figure)
    return frame


def write_stage_bars(rows: list[dict], out: Path, name: str, metric: str, chance: float) -> pd.DataFrame:
    """One bar per stage (base, SFT, …) against the level of a random ranking: stages are not steps, so no line joins
    them. The CSV holds every column of `rows`; the markdown table the metric and each stage's paired comparison."""
    frame = pd.DataFrame(rows)
    with atomic_path(out / f"{name}.csv") as scratch:
        frame.to_csv(scratch, index=False)
    write_text(out / f"{name}.md", stage_table(frame, metric))
    figure, axis = plt.subplots(figsize=(6, 0.4 * len(frame) + 1.2))
    axis.barh(frame["stage"], 100 * frame[metric])
    axis.axvline(100 * chance, color="grey", linestyle="--", label="random ranking")
    for y, value in enumerate(100 * frame[metric]):
        axis.annotate(f"{value:.1f}", (value, y), xytext=(3, 0), textcoords="offset points", va="center")
    axis.invert_yaxis()
    axis.set_xlim(0, 115 * max(frame[metric].max(), chance))
    axis.set_xlabel(f"{name} {metric} × 100")
    axis.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), frameon=False)
    figure.tight_layout()
    with atomic_path(out / f"{name}.png") as scratch:
        figure.savefig(scratch, dpi=120)
    plt.close(figure)
    return frame


def stage_table(frame: pd.DataFrame, metric: str) -> str:
    """Markdown: each stage's NDCG@1/5/10/20 × 100 (where the rows have them) and, where it builds on another stage,
    the paired difference in `metric` to it (mean ± standard error × 100, Wilcoxon p, users better / worse); a
    significant difference (p < 0.05) in bold."""
    shown = [name for name in ("ndcg@1", "ndcg@5", "ndcg@10", "ndcg@20") if name in frame] or [metric]
    lines = [f"| stage | users | {' | '.join(shown)} | vs | Δ {metric} | p (Wilcoxon) | better / worse |",
             "|---" * (len(shown) + 6) + "|"]
    for row in frame.to_dict("records"):
        paired = ["", "", "", ""]
        if isinstance(row.get("vs"), str):
            delta = f"{100 * row[f'delta_{metric}']:+.2f} ± {100 * row['delta_se']:.2f}"
            paired = [row["vs"], f"**{delta}**" if row["significant"] else delta, f"{row['p_wilcoxon']:.3g}",
                      f"{int(row['better'])} / {int(row['worse'])}"]
        cells = [f"{100 * row[name]:.2f}" for name in shown]
        lines.append(f"| {row['stage']} | {int(row['users'])} | " + " | ".join(cells + paired) + " |")
    return "\n".join(lines) + "\n"
