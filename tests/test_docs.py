"""The README's examples run as written: the environment snippet and the custom policy with its command."""

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

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
