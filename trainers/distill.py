"""Teacher distillation: fast-thinking traces (`<think>` rationale + ranked list) for cases built from training data.

Cases come from the env's `train` split (the user's last training interactions, 19 sampled negatives), so no
validation or test target is ever shown. A teacher writes each trace; screening (paper §4.2) checks the format and
an NDCG@10 threshold on the teacher's ranking, and a rejected trace goes back to the teacher with the specific error,
up to `max_attempts` times. Two teachers:

- `LLMTeacher` — any backend spec (e.g. a DeepSeek-R1 endpoint via `openai:`), asked to think and rank.
- `AnswerConditionedTeacher` — the honest offline default: a strong classical ranking (SASRec trained on the `_full`
  view) supplies the list, and the local LLM writes the rationale *given* the real next item (rationale generation
  conditioned on the answer). Its traces say so in their provenance.

Traces are JSONL, one per line: prompt (chat), completion, case ids, teacher, attempts, NDCG@10 and provenance.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
from tqdm.auto import tqdm

from agents.llm import LLM, Chat, Sampling, load_llm
from agents.parsing import parse_ranking
from agents.prompts import ranking_chat
from starec_env.envs import UserEnv
from starec_env.metrics import ndcg, target_rank
from starec_env.protocol import Protocol


@dataclass(frozen=True)
class DistillConfig:
    users: int = 200  # training users sampled for traces
    rounds: int = 1  # training interactions per user (the last ones)
    teacher: str = "sasrec"  # "sasrec" (answer-conditioned, offline) or an LLM spec for LLMTeacher
    ndcg_threshold: float = 0.3  # NDCG@10 the teacher's ranking must reach (0.3 ≈ target in the top 5)
    max_attempts: int = 3
    history: int = 20
    seed: int = 0


@dataclass
class TrainingCase:
    user: int
    history: list[int]
    candidates: list[int]
    target_index: int
    chat: Chat  # the fast-thinking prompt the student will see (the STARec policy's own format)


def training_cases(protocol: Protocol, config: DistillConfig) -> list[TrainingCase]:
    """Prompts from the Gymnasium env's `train` split: one case per (user, round), targets from training data only."""
    env = UserEnv(protocol=protocol, rounds=config.rounds, split="train")
    rng = np.random.default_rng(config.seed)
    chosen = rng.choice(len(protocol.test), size=min(config.users, len(protocol.test)), replace=False)
    cases = []
    for index in chosen:
        observation, _ = env.reset(seed=int(config.seed + index), options={"case": int(index)})
        for _ in range(config.rounds):
            candidates, history = observation["candidates"], observation["history"]
            observation, _, _, _, info = env.step(np.zeros(len(candidates)))  # replay: the choice is the logged item
            cases.append(_case(protocol, int(observation["user"]), history[history >= 0], candidates,
                               int(np.flatnonzero(candidates == info["choice"])[0]), config.history))
    return cases


def _case(protocol, user, history, candidates, target_index, length) -> TrainingCase:
    titles = [protocol.item_text(i) for i in candidates]
    chat = ranking_chat([protocol.item_text(i) for i in history[-length:]], titles,
                        protocol.profiles[user], think=True)
    return TrainingCase(int(user), [int(i) for i in history], [int(i) for i in candidates], int(target_index), chat)


# -------------------------------------------------------------------------------------------------- screening
def screen(text: str, n_candidates: int, target_index: int, threshold: float) -> tuple[str | None, float, bool]:
    """(error for the teacher or None, NDCG@10 of its ranking, whether the error is about the format)."""
    if "</think>" not in text or not text.split("</think>")[0].replace("<think>", "").strip():
        return "Start with a short rationale inside <think></think>, then the list.", 0.0, True
    parsed = parse_ranking(text, ["?"] * n_candidates)
    if parsed.status != "ok" or parsed.method != "index":
        return (f"After </think>, give all {n_candidates} labels exactly once as a list like [3, 1, 2, ...]; "
                f"your answer named {parsed.matched} of them."), 0.0, True
    rank = target_rank(parsed.scores(), target_index)
    quality = float(ndcg(rank, 10))
    if quality < threshold:
        return (f"Your ranking puts the item the user really chose at rank {rank}; reconsider the user's recent "
                "history and rank again."), quality, False
    return None, quality, False


# --------------------------------------------------------------------------------------------------- teachers
class LLMTeacher:
    """Any LLM asked to think and rank; screening errors go back to it as a follow-up turn."""

    def __init__(self, spec: str, max_tokens: int = 512):
        self.llm, self.max_tokens = load_llm(spec), max_tokens
        self.name = f"llm:{self.llm.spec}"
        self.revises_ranking = True

    def write(self, cases: Sequence[TrainingCase], errors: Sequence[str | None], previous: Sequence[str]) -> list[str]:
        chats = [case.chat if error is None else
                 [*case.chat, {"role": "assistant", "content": answer}, {"role": "user", "content": error}]
                 for case, error, answer in zip(cases, errors, previous)]
        return [group[0].text for group in self.llm.generate(chats, Sampling(max_tokens=self.max_tokens))]


class AnswerConditionedTeacher:
    """A classical ranking plus a local-LLM rationale written with the real next item known (see module docstring)."""

    def __init__(self, protocol: Protocol, llm: LLM | str | None = None, seed: int = 0, max_tokens: int = 40):
        from policies.sasrec import SASRecPolicy

        self.protocol = protocol
        self.ranker = SASRecPolicy(seed=seed).fit(protocol.train("full"))
        self.llm = llm if isinstance(llm, LLM) else load_llm(llm)
        self.max_tokens = max_tokens
        self.name = f"answer-conditioned: SASRec_full ranking + {self.llm.spec} rationale"
        self.revises_ranking = False  # the ranking is deterministic: only format errors are worth a retry

    def write(self, cases: Sequence[TrainingCase], errors: Sequence[str | None], previous: Sequence[str]) -> list[str]:
        from starec_env.protocol import Cases

        batch = Cases(np.array([c.user for c in cases]), [np.array(c.history) for c in cases],
                      np.array([c.candidates for c in cases]), np.array([c.target_index for c in cases]))
        scores = self.ranker.score(batch)
        chats = [self._rationale_chat(case, error) for case, error in zip(cases, errors)]
        answers = self.llm.generate(chats, Sampling(max_tokens=self.max_tokens, stop=("\n",)))
        texts = []
        for (completion,), row in zip(answers, scores):
            order = np.lexsort((np.arange(len(row)), -row))
            rationale = re.sub(r"\s+", " ", f"The user {completion.text}").strip()
            texts.append(f"<think>{rationale}</think>\n[{', '.join(str(i + 1) for i in order)}]")
        return texts

    def _rationale_chat(self, case: TrainingCase, error: str | None) -> Chat:
        target = self.protocol.item_text(case.candidates[case.target_index])
        history = "; ".join(self.protocol.item_text(i) for i in case.history[-5:])
        note = f" Previous attempt was rejected: {error}" if error else ""
        return [{"role": "user", "content": f"A user recently liked: {history}. Next they chose {target}. In one "
                                            f"sentence, explain why this choice fits their taste.{note}"},
                {"role": "assistant", "content": "The user"}]


# ------------------------------------------------------------------------------------------------------- run
def distill(protocol: Protocol, config: DistillConfig, out: Path, teacher=None, batch: int = 16) -> dict:
    """Write screened traces to `out` (JSONL); returns counts. Existing lines are kept: a rerun resumes."""
    teacher = teacher or (AnswerConditionedTeacher(protocol, seed=config.seed) if config.teacher == "sasrec"
                          else LLMTeacher(config.teacher))
    cases = training_cases(protocol, config)
    done = sum(1 for _ in out.open()) if out.is_file() else 0
    counts = {"cases": len(cases), "kept": 0, "rejected": 0, "attempts": 0, "resumed_from": done}
    with out.open("a") as sink:
        for start in tqdm(range(0, len(cases), batch), desc="distill", initial=done // batch):
            chunk = cases[start:start + batch]
            if start + len(chunk) <= done:
                continue
            for case, (text, error, quality, attempts) in zip(chunk, _screened(teacher, chunk, config)):
                counts["attempts"] += attempts
                counts["kept" if error is None else "rejected"] += 1
                sink.write(json.dumps({"prompt": case.chat, "completion": text, "accepted": error is None,
                                       "error": error, "ndcg@10": quality, "attempts": attempts,
                                       "user": case.user, "candidates": case.candidates,
                                       "target_index": case.target_index, "teacher": teacher.name,
                                       "config": asdict(config)}) + "\n")
            sink.flush()
    return counts


def _screened(teacher, cases: list[TrainingCase], config: DistillConfig) -> list[tuple[str, str | None, float, int]]:
    """Generate, screen, and send the rejected back with their error, up to `max_attempts` rounds."""
    results: list = [None] * len(cases)
    pending, errors, previous = list(range(len(cases))), [None] * len(cases), [""] * len(cases)
    for attempt in range(1, config.max_attempts + 1):
        texts = teacher.write([cases[i] for i in pending], [errors[i] for i in pending], [previous[i] for i in pending])
        still = []
        for i, text in zip(pending, texts):
            error, quality, about_format = screen(text, len(cases[i].candidates), cases[i].target_index,
                                                  config.ndcg_threshold)
            results[i], errors[i], previous[i] = (text, error, quality, attempt), error, text
            if error is not None and (about_format or teacher.revises_ranking):
                still.append(i)
        pending = still
        if not pending:
            break
    return results
