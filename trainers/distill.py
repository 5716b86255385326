"""Teacher distillation: fast-thinking traces (`<think>` rationale + ranked list) and slow-thinking traces (reflection +
rewritten preference summary) for cases built from training data.

Fast cases come from the env's `train` split (the user's last training interactions, 19 sampled negatives), so no
validation or test target is ever shown; slow cases are the misses of the same feedback loop (`trainers.cases`).
A teacher writes each trace; screening (paper §4.2) checks the format (and, for rankings, an NDCG@10 threshold on the
teacher's ranking), and a rejected trace goes back to the teacher with the specific error, up to `max_attempts` times.
Four teachers:

- `LLMTeacher` — any backend spec (e.g. a DeepSeek-R1 endpoint via `openai:`), asked to think and rank, or reflect.
- `AnswerConditionedTeacher` — a strong classical ranking (SASRec trained on the `_full` view) supplies the list,
  and the local LLM writes the rationale *given* the real next item (rationale generation conditioned on the answer).
- `CoLikedTeacher` — the offline default, with `evidence`: it ranks in the order the prompt's evidence lines imply
  (co-liked counts, then with `popular` the most popular candidates; `policies.evidence`) and its rationale names
  the top three, so every ranking it teaches can be derived from the prompt. `FusedTeacher` does the same with the
  fused order of every line the prompt shows, a recommender tool's included, its weights chosen on validation
  (`policies.fusion`). SFT on SASRec's lists, which the
  prompt does not determine, took a 135M student below random (docs/findings.md).

Both offline teachers write reflections with the local LLM given the real choice; traces say all this in their
provenance.

Traces are JSONL, one per line: prompt (chat), completion, case ids, teacher, attempts, quality and provenance —
`traces.jsonl` (fast) and `reflections.jsonl` (slow) in the output folder.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
from tqdm.auto import tqdm

from starec_env.agents import slow
from starec_env.agents.llm import LLM, Chat, Sampling, load_llm
from starec_env.agents.parsing import parse_ranking
from starec_env.agents.prompts import SUMMARY_HEAD, PromptConfig
from starec_env.policies.evidence import Evidence, EvidenceSource, labels
from starec_env.policies.fusion import Fusion, fuse_on
from starec_env.metrics import ndcg, target_rank
from starec_env.protocol import Cases, Protocol
from starec_env.trainers.cases import ReflectionCase, TrainingCase, reflection_cases, training_cases


@dataclass(frozen=True)
class DistillConfig:
    """Teacher traces: how many, from which teacher, and how they are screened. What the prompts show is the
    pipeline's `PromptConfig`, shared with SFT, GRPO and validation."""

    users: int = field(default=300, metadata={"help": "training users sampled for fast-thinking traces"})
    rounds: int = field(default=1, metadata={"help": "training interactions per user (the last ones)"})
    reflection_users: int = field(default=48, metadata={
        "help": "users whose feedback loop is replayed for slow-thinking traces (misses only; 0: none)"})
    teacher: str = field(default="co-liked", metadata={
        "help": "'co-liked' (ranks by the evidence in the prompt), 'fused' (by all its evidence lines, weights chosen "
                "on validation), 'sasrec' (answer-conditioned) or an LLM spec"})
    teacher_seconds: float = field(default=180, metadata={"help": "training budget of the SASRec teacher"})
    ndcg_threshold: float = field(default=0.3, metadata={
        "help": "NDCG@10 a teacher's ranking must reach (0.3: about the target in the top 5)"})
    max_attempts: int = field(default=3, metadata={"help": "tries per trace, a rejected one with its error"})
    seed: int = field(default=0, metadata={"help": "draw of the training users"})


MIN_SUMMARY_WORDS = 8  # "This user's preferences were:" is a format, not a summary


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


def screen_reflection(text: str, case: ReflectionCase) -> str | None:
    """The error for a reflection that is not "Reflection: …" then "Updated preferences: <a new summary>", or None."""
    read = slow.read_reflection(text, case.summary)
    if not text.lstrip().startswith("Reflection:") or read.status != "ok":
        return (f"Start with 'Reflection:' and one sentence on why the user chose {case.target}, then a new line "
                f"starting with '{SUMMARY_HEAD}' and the rewritten summary.")
    if read.summary == case.summary:
        return f"The text after '{SUMMARY_HEAD}' repeats the old summary; rewrite it with what the choice taught you."
    if len(read.summary.split()) < MIN_SUMMARY_WORDS:
        return (f"The text after '{SUMMARY_HEAD}' says too little; describe the genres, eras or moods the user likes "
                "in two short sentences.")
    return None


Check = Callable[[str, object], tuple[str | None, dict, bool]]  # text, case → (error, quality, worth a retry)


def ranking_check(threshold: float, revises_ranking: bool) -> Check:
    """`screen` for the retry loop: a format error is always retried, a low NDCG only if the teacher can revise."""
    def check(text: str, case: TrainingCase):
        error, quality, about_format = screen(text, len(case.candidates), case.target_index, threshold)
        return error, {"ndcg@10": quality}, error is not None and (about_format or revises_ranking)
    return check


def reflection_check(text: str, case: ReflectionCase) -> tuple[str | None, dict, bool]:
    error = screen_reflection(text, case)
    return error, {}, error is not None


# --------------------------------------------------------------------------------------------------- teachers
class LLMTeacher:
    """Any LLM asked to think and rank, or to reflect; screening errors go back to it as a follow-up turn."""

    def __init__(self, spec: str, max_tokens: int = 512):
        self.llm, self.max_tokens = load_llm(spec), max_tokens
        self.name = f"llm:{self.llm.spec}"
        self.revises_ranking = True

    def write(self, cases: Sequence[TrainingCase | ReflectionCase], errors: Sequence[str | None],
              previous: Sequence[str]) -> list[str]:
        chats = [case.chat if error is None else
                 [*case.chat, {"role": "assistant", "content": answer}, {"role": "user", "content": error}]
                 for case, error, answer in zip(cases, errors, previous)]
        return [group[0].text for group in self.llm.generate(chats, Sampling(max_tokens=self.max_tokens))]

    reflect = write  # the reflection prompt carries its own instructions


class LocalReflections:
    """Slow-thinking traces from the local LLM, which is told the real choice and explains it, then rewrites the
    summary — two prefilled steps, so the format holds whatever a small model would write on its own."""

    revises_ranking = False  # offline rankings are deterministic: only format errors are worth a retry

    def __init__(self, llm: LLM | str | None = None, max_tokens: int = 40):
        self.llm = llm if isinstance(llm, LLM) else load_llm(llm)
        self.max_tokens = max_tokens

    def reflect(self, cases: Sequence[ReflectionCase], errors: Sequence[str | None],
                previous: Sequence[str]) -> list[str]:
        """A first attempt is greedy; a retry samples."""
        sampling = Sampling(max_tokens=self.max_tokens, stop=("\n",), temperature=0.7 if any(errors) else 0.0)
        openings = [f"Reflection: the user chose {case.target} because" for case in cases]
        why = self.llm.generate([[*case.chat, {"role": "assistant", "content": opening}]
                                 for case, opening in zip(cases, openings)], sampling)
        reflections = [slow.continued(opening, slow.first_sentence(completion.text)) for opening, (completion,) in
                       zip(openings, why)]
        summaries = self.llm.generate([[*case.chat, {"role": "assistant",
                                                     "content": f"{reflection}\n{SUMMARY_HEAD} This user"}]
                                       for case, reflection in zip(cases, reflections)], sampling)
        return [f"{reflection}\n{SUMMARY_HEAD} {slow.clip(slow.continued('This user', completion.text))}"
                for reflection, (completion,) in zip(reflections, summaries)]


class CoLikedTeacher(LocalReflections):
    """Ranks in the order the prompt's evidence implies and cites its top candidates as the rationale."""

    def __init__(self, llm: LLM | str | None = None, max_tokens: int = 40):
        super().__init__(llm, max_tokens)
        self.name = f"co-liked counts shown in the prompt + {self.llm.spec} reflections given the real choice"

    def write(self, cases: Sequence[TrainingCase], errors: Sequence[str | None], previous: Sequence[str]) -> list[str]:
        if any(case.evidence is None or not case.evidence.counts for case in cases):
            raise ValueError("the co-liked teacher ranks by the counts in the prompt: build the cases with "
                             "co-liked evidence (PromptConfig.evidence=True)")
        return [co_liked_answer(case.evidence) for case in cases]


def co_liked_answer(evidence: Evidence, cite: int = 3) -> str:
    """`<think>` naming the most co-liked (and popular) candidates, then all labels in the evidence's order."""
    order = evidence.order()
    cited = labels([i for i in order[:cite] if evidence.counts[i]])
    rationale = (f"Most co-liked with the user's recent items: {cited}." if cited else
                 "No candidate is co-liked with the user's recent items.")
    if evidence.popular:
        rationale += f" Most popular: {labels(evidence.popular[:cite])}."
    return f"<think>{rationale}</think>\n[{', '.join(str(i + 1) for i in order)}]"


class FusedTeacher(LocalReflections):
    """Ranks in the fused order of the prompt's evidence lines and cites its top three as the rationale."""

    def __init__(self, fusion: Fusion, llm: LLM | str | None = None, max_tokens: int = 40):
        super().__init__(llm, max_tokens)
        self.fusion = fusion
        self.name = f"fused evidence lines ({fusion.describe()}) + {self.llm.spec} reflections given the real choice"

    def write(self, cases: Sequence[TrainingCase], errors: Sequence[str | None], previous: Sequence[str]) -> list[str]:
        if any(case.evidence is None for case in cases):
            raise ValueError("the fused teacher ranks by the evidence in the prompt: build the cases with evidence "
                             "lines (PromptConfig.evidence=True or PromptConfig.tool)")
        return [fused_answer(case.evidence, len(case.candidates), self.fusion) for case in cases]


def fused_answer(evidence: Evidence, n: int, fusion: Fusion, cite: int = 3) -> str:
    """`<think>` naming the fused order's first candidates and the lines behind it, then all labels in that order."""
    order = fusion.order(evidence, n)
    rationale = f"Weighing the evidence lines ({fusion.describe()}): {labels(order[:cite])} first."
    return f"<think>{rationale}</think>\n[{', '.join(str(i + 1) for i in order)}]"


class AnswerConditionedTeacher(LocalReflections):
    """A classical ranking plus local-LLM text written with the real next item known (see module docstring)."""

    def __init__(self, protocol: Protocol, llm: LLM | str | None = None, seed: int = 0, max_tokens: int = 40,
                 max_seconds: float | None = None):
        from starec_env.policies.sasrec import SASRecPolicy

        super().__init__(llm, max_tokens)
        self.protocol = protocol
        self.ranker = SASRecPolicy(seed=seed, max_seconds=max_seconds).fit(protocol.train("full"))
        self.name = f"answer-conditioned: SASRec_full ranking + {self.llm.spec} rationale"

    def write(self, cases: Sequence[TrainingCase], errors: Sequence[str | None], previous: Sequence[str]) -> list[str]:
        batch = Cases(np.array([c.user for c in cases]), [np.array(c.history) for c in cases],
                      np.array([c.candidates for c in cases]), np.array([c.target_index for c in cases]))
        scores = self.ranker.score(batch)
        chats = [self._rationale_chat(case, error) for case, error in zip(cases, errors)]
        answers = self.llm.generate(chats, Sampling(max_tokens=self.max_tokens, stop=("\n",)))
        texts = []
        for (completion,), row in zip(answers, scores):
            order = np.lexsort((np.arange(len(row)), -row))
            rationale = re.sub(r"\s+", " ", slow.continued("The user", completion.text))
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
def distill(protocol: Protocol, config: DistillConfig, out: Path, prompt: PromptConfig, teacher=None,
            batch: int = 16) -> dict:
    """Write screened traces into the folder `out`: `traces.jsonl` (fast) and `reflections.jsonl` (slow).

    Existing lines are kept, so a rerun resumes; returns counts per file."""
    source = EvidenceSource.of(protocol.train("full"), prompt)  # the tool's seed-0 fit, as GRPO and validation
    teacher = teacher or make_teacher(protocol, config, source)
    out.mkdir(parents=True, exist_ok=True)
    check_ranking = ranking_check(config.ndcg_threshold, teacher.revises_ranking)
    provenance = {"teacher": teacher.name, "config": asdict(config), "prompt_config": asdict(prompt)}
    fast = training_cases(protocol, config.users, config.seed, prompt, config.rounds, source)
    counts = {"traces": _append(out / "traces.jsonl", fast,
                                lambda chunk: _screened(teacher.write, check_ranking, chunk, config.max_attempts),
                                provenance, batch)}
    if config.reflection_users:
        slow_cases = reflection_cases(protocol, teacher.llm, config.reflection_users, config.seed, prompt)
        counts["reflections"] = _append(
            out / "reflections.jsonl", slow_cases,
            lambda chunk: _screened(teacher.reflect, reflection_check, chunk, config.max_attempts), provenance, batch)
    return counts


def make_teacher(protocol: Protocol, config: DistillConfig, source: EvidenceSource | None = None):
    if config.teacher == "co-liked":
        return CoLikedTeacher()
    if config.teacher == "fused":
        if source is None:
            raise ValueError("teacher='fused' needs evidence lines to fuse: set --evidence and/or --tool")
        return FusedTeacher(fuse_on(source, protocol.valid)[0])
    if config.teacher == "sasrec":
        return AnswerConditionedTeacher(protocol, seed=config.seed, max_seconds=config.teacher_seconds)
    return LLMTeacher(config.teacher)


def _append(path: Path, cases: list, screened, provenance: dict, batch: int) -> dict:
    """Screen the cases not yet in `path` in batches and append one JSON line each."""
    done = _complete_lines(path)
    counts = {"cases": len(cases), "kept": 0, "rejected": 0, "attempts": 0, "resumed_from": done}
    with path.open("a") as sink:
        for start in tqdm(range(done, len(cases), batch), desc=f"distill {path.stem}"):
            chunk = cases[start:start + batch]
            for case, (text, error, quality, attempts) in zip(chunk, screened(chunk)):
                counts["attempts"] += attempts
                counts["kept" if error is None else "rejected"] += 1
                sink.write(json.dumps({"prompt": case.chat, "completion": text, "accepted": error is None,
                                       "error": error, **quality, "attempts": attempts, "user": case.user,
                                       **_case_fields(case), **provenance}) + "\n")
            sink.flush()
    return counts


def _complete_lines(path: Path) -> int:
    """How many whole lines `path` holds; a last line cut short by a kill is removed, so a rerun writes it again."""
    if not path.is_file():
        return 0
    data = path.read_bytes()
    whole = data[: data.rfind(b"\n") + 1]
    if len(whole) < len(data):
        with path.open("r+b") as handle:
            handle.truncate(len(whole))
    return whole.count(b"\n")


def _case_fields(case: TrainingCase | ReflectionCase) -> dict:
    if isinstance(case, ReflectionCase):
        return {"summary_before": case.summary, "target": case.target}
    return {"candidates": case.candidates, "target_index": case.target_index}


def _screened(write, check: Check, cases: list, max_attempts: int) -> list[tuple[str, str | None, dict, int]]:
    """Generate, screen, and send the rejected back with their error, up to `max_attempts` rounds."""
    results: list = [None] * len(cases)
    pending, errors, previous = list(range(len(cases))), [None] * len(cases), [""] * len(cases)
    for attempt in range(1, max_attempts + 1):
        texts = write([cases[i] for i in pending], [errors[i] for i in pending], [previous[i] for i in pending])
        still = []
        for i, text in zip(pending, texts):
            error, quality, retry = check(text, cases[i])
            results[i], errors[i], previous[i] = (text, error, quality, attempt), error, text
            if retry:
                still.append(i)
        pending = still
        if not pending:
            break
    return results
