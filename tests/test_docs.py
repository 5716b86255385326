"""The README's examples run as written: the environment snippet and the custom policy with its command."""

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


def python_block(after: str) -> str:
    """The first ```python block after the heading `after`."""
    section = README[README.index(after):]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_the_environment_example_runs(ml1m, capsys):
    exec(compile(python_block("## The environment"), "README.md", "exec"), {})
    assert "return" in capsys.readouterr().out


def test_the_custom_policy_example_runs_with_the_command_it_gives(tmp_path):
    """`mypolicies.py` in the working directory and `starec bench --policies …:RecentPopularity`, as a user would."""
    code = python_block("## Your own policy")
    (tmp_path / "mypolicies.py").write_text(code)
    command = shlex.split(re.search(r"# mypolicies\.py — run: (.*)", code).group(1))
    assert command[0] == "starec"
    starec = Path(sys.executable).with_name("starec")
    done = subprocess.run([str(starec), *command[1:], "--out", str(tmp_path / "results")], cwd=tmp_path,
                          capture_output=True, text=True, env={**os.environ, "PYTHONPATH": ""})
    assert done.returncode == 0, done.stderr[-2000:]
    table = next((tmp_path / "results").glob("*/table.md")).read_text()
    assert "| recentpop_full |" in table and "| Pop_full |" in table


DOCS = [Path(__file__).resolve().parents[1] / "README.md",
        *sorted((Path(__file__).resolve().parents[1] / "docs").glob("*.md"))]


def shown_commands() -> list[tuple[str, str]]:
    """Every `starec …` command the README and docs show, in code spans or blocks (also as `$(which starec) …`
    under a launcher such as `accelerate launch`), with the page it is on."""
    found = []
    for page in DOCS:
        text = page.read_text()
        blocks = re.findall(r"```(?:bash)?\n(.*?)```", text, re.S)
        lines = [line for block in blocks for line in block.splitlines()]
        lines += re.findall(r"`(starec [^`]+)`", text)
        for line in lines:
            command = " ".join(line.split("#")[0].split()).rstrip("\\").strip()
            if "$(which starec)" in command:
                command = "starec" + command.split("$(which starec)", 1)[1]
            if command.startswith("starec ") and "…" not in command and "..." not in command:
                found.append((page.name, command))
    return found


@pytest.mark.parametrize("page, command", shown_commands())
def test_every_command_in_the_docs_parses(page, command):
    from starec_env.benchmarks.cli import build_parser

    words = ["1" if re.fullmatch(r"[A-Z_]+", word) else word for word in shlex.split(command)[1:]]  # placeholders
    try:
        build_parser().parse_args(words)
    except SystemExit as exit:  # argparse's way of saying no (or, for --help, of having said it all)
        assert exit.code == 0, f"{page}: `{command}` does not parse"


@pytest.mark.parametrize("page", DOCS, ids=lambda p: p.name)
def test_every_relative_link_resolves(page):
    for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", page.read_text()):
        assert (page.parent / target).exists(), f"{page.name} links to {target}, which does not exist"


RECORDS_NOT_KEPT = {"fidelity.md"}  # rendered by `starec report` before runs' records were kept in docs/runs


@pytest.mark.parametrize("page", DOCS, ids=lambda p: p.name)
def test_every_table_is_rendered_from_its_kept_run_or_says_it_is_typed(page):
    """A table is inside a report block that renders again, unchanged, from the records its marker names, or right
    under a `<!-- typed: why -->` line (a list, not a measurement; or a measurement whose run was not kept)."""
    from starec_env.benchmarks.render import BLOCK, RENDERED, REPORT_BEGIN, REPORT_END, rendered_again

    text = page.read_text()
    assert rendered_again(page) == text, f"{page.name}: a report block no longer matches its runs' records"
    outside = BLOCK.sub("", text)
    for legacy in outside.split(REPORT_BEGIN)[1:]:  # unnamed blocks: the run is named, its records were not kept
        assert page.name in RECORDS_NOT_KEPT, f"{page.name}: a report block without a name and its runs"
        body = legacy.split(REPORT_END, 1)[0]
        assert RENDERED in body[:max(body.find("\n|"), 0)], f"{page.name}: a table without its run"
        outside = outside.replace(REPORT_BEGIN + body, "")
    lines = outside.splitlines()
    for number, line in enumerate(lines):
        if line.startswith("|") and (number == 0 or not lines[number - 1].startswith("|")):
            above = next((lines[k] for k in range(number - 1, -1, -1) if lines[k].strip()), "")
            assert above.startswith("<!-- typed: "), f"{page.name}: the table `{line[:60]}` is neither rendered " \
                                                     "by `starec report` nor marked `<!-- typed: why -->`"
