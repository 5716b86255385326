"""The shape of the code: one import root, imports flowing one way, one home for the agent loop."""

import ast
import importlib.metadata
import re
import subprocess
import sys
from pathlib import Path

import networkx as nx
import pytest

import starec_env

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = {"starec_env": "starec_env", "agents": "starec_env.agents", "policies": "starec_env.policies",
           "trainers": "starec_env.trainers", "benchmarks": "starec_env.benchmarks"}
# The flow, bottom to top; a module may import its own layer and the layers below it, never one above.
LAYERS = [
    ("starec_env.cache", "starec_env.files", "starec_env.records", "starec_env.sources"),
    ("starec_env.data",),
    ("starec_env.datasets", "starec_env.registration", "starec_env"),
    ("starec_env.protocol", "starec_env.metrics", "starec_env.rewards"),
    ("starec_env.agents",),
    ("starec_env.envs", "starec_env.vector"),
    ("starec_env.policies",),
    ("starec_env.trainers",),
    ("starec_env.benchmarks",),
]


def modules() -> dict[str, Path]:
    """Every module of the library by its import name."""
    found = {}
    for folder, package in FOLDERS.items():
        for file in (ROOT / folder).rglob("*.py"):
            parts = file.relative_to(ROOT / folder).with_suffix("").parts
            name = ".".join((package, *parts))
            found[name.removesuffix(".__init__")] = file
    return found


def imports(file: Path, known: set[str]) -> set[str]:
    """The library modules a file imports anywhere in it (function-level imports included)."""
    targets = set()
    for node in ast.walk(ast.parse(file.read_text())):
        if isinstance(node, ast.Import):
            targets |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            targets |= {f"{node.module}.{alias.name}" if f"{node.module}.{alias.name}" in known else node.module
                        for alias in node.names}
    return {target for target in targets if target in known}


def layer(module: str) -> int:
    for index, names in enumerate(LAYERS):
        if any(module == name or (name != "starec_env" and module.startswith(f"{name}.")) for name in names):
            return index
    raise AssertionError(f"{module} is in no layer of the flow: add it to LAYERS")


def test_imports_flow_one_way_and_have_no_cycle():
    found = modules()
    graph = nx.DiGraph()
    for module, file in found.items():
        for target in imports(file, set(found)):
            graph.add_edge(module, target)
            assert layer(target) <= layer(module), f"{module} imports {target}, which sits above it in the flow"
    assert nx.is_directed_acyclic_graph(graph), f"import cycle: {nx.find_cycle(graph)}"
    assert graph.has_edge("starec_env.envs", "starec_env.agents.society")  # the walk really saw the imports


def test_every_import_uses_the_one_root():
    generic = re.compile(r"^\s*(from|import) (agents|policies|trainers|benchmarks)\b", re.M)
    offenders = [str(file.relative_to(ROOT)) for file in (*modules().values(), *ROOT.glob("tests/*.py"))
                 if generic.search(file.read_text())]
    assert not offenders


@pytest.mark.parametrize("call", ["prompts.reflection_chat(", "slow.reflect(", "slow.summarize(",
                                  "prompts.summary_chat(", "np.setdiff1d("])
def test_the_feedback_loop_and_candidate_rounds_have_one_home(call):
    """Summarise → rank → compare → reflect lives in agents/loop.py; rounds are sampled in protocol.sample_round."""
    homes = {str(file.relative_to(ROOT)) for file in modules().values() if call in file.read_text()}
    assert homes == ({"starec_env/protocol.py"} if call == "np.setdiff1d(" else {"agents/loop.py"})


def test_the_version_is_written_once():
    assert "version = attr: starec_env.__version__" in (ROOT / "setup.cfg").read_text()
    assert re.fullmatch(r"\d+\.\d+\.\d+", starec_env.__version__)
    assert (ROOT / "LICENSE").read_text().startswith("\n                                 Apache License")


def test_the_library_coexists_with_openai_agents(tmp_path):
    """openai-agents installs a top-level `agents` package; ours lives under `starec_env` and leaves it alone."""
    try:
        importlib.metadata.distribution("openai-agents")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("openai-agents is part of the dev extra (CI installs it)")
    script = ("import agents, starec_env.agents.loop, gymnasium as gym\n"
              "assert hasattr(agents, 'Runner') and 'site-packages' in agents.__file__, agents.__file__\n"
              "assert 'STARec-ML1M-v0' in gym.registry\n"
              "print(agents.__name__, starec_env.agents.loop.FeedbackLoop.__name__)")
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.split() == ["agents", "FeedbackLoop"], done.stderr
