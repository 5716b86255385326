"""Tests run on the real data in $STAREC_DATA_DIR (CI points it at ../shared/data); never on copies in the repo."""

import os
from pathlib import Path

import pytest

from starec_env.agents.llm import LLM, Completion


def pytest_configure(config):
    if not os.environ.get("STAREC_DATA_DIR"):
        default = Path(__file__).resolve().parents[2] / "shared" / "data"
        if default.is_dir():
            os.environ["STAREC_DATA_DIR"] = str(default)


@pytest.fixture(scope="session", autouse=True)
def _isolated_cache(tmp_path_factory):
    """A cache for the session (CI passes a persistent one): protocols and the model are built once, not per test."""
    os.environ.setdefault("STAREC_CACHE_DIR", str(tmp_path_factory.mktemp("starec-cache")))
    os.environ["STAREC_OFFLINE"] = "1"


@pytest.fixture(scope="session")
def data_dir() -> Path:
    path = Path(os.environ.get("STAREC_DATA_DIR", ""))
    if not (path / "ml-1m").is_dir():
        pytest.fail("STAREC_DATA_DIR must point at the shared data folder (with ml-1m/ and amazon-cds/)")
    return path


@pytest.fixture(scope="session")
def ml1m(data_dir):
    from starec_env.protocol import build_protocol

    return build_protocol("ml-1m")


@pytest.fixture(scope="session")
def cds(data_dir):
    from starec_env.protocol import build_protocol

    return build_protocol("amazon-cds")


@pytest.fixture(scope="session")
def smollm(_isolated_cache):
    """The real embedded SmolLM2-135M-Instruct in float32 (on any CPU, so exact comparisons hold), loaded once for
    every test that generates text."""
    from starec_env.agents.llm import load_llm

    return load_llm(threads=2, dtype="float32")


class Judge(LLM):
    """A stand-in user model (the env around it is under test): the `favourite`-th option always scores best — of the
    shown items and of the rating digits alike — and every summary is the same sentence."""

    spec = "judge"

    def __init__(self, favourite: int):
        self.favourite = favourite

    def _generate(self, chats, sampling):
        return [[Completion("This user likes films.", 5, 5, "stop")] for _ in chats]

    def score_continuations(self, chats, options):
        return [[-abs(i - self.favourite) for i in range(len(row))] for row in options]
