"""STARec (arXiv 2508.18812): a per-user agent that thinks slow about the user, then ranks fast.

Slow thinking first: the agent writes a preference summary from the user's history, then replays the user's last
`reflect_steps` known interactions as ranking rounds — rank 20 candidates (the real next item + 19 sampled
negatives) → compare its top pick with the real choice → on a miss, reflect and rewrite the summary — the simulated
feedback loop. Fast thinking then ranks the test case from profile + summary + recent history, either by the
likelihood of each candidate over one cached prompt that does not list them (`fast="likelihood"`, see
`prompts.next_item_chat`) or by writing a ranked list of the listed candidates, optionally after a `<think>`
rationale (`fast="generate"`). The memory and both modes are `agents/`'s, shared with the simulated users.
`reflect_steps=0` is the paper's "w/o self-reflection" ablation (history only, no summary). `evidence=True` (a
`PromptConfig` field, like `popular`, `think` and `history`) adds how often candidates are liked next to the user's
recent items (`policies.evidence`; in generate mode one line of the ten most co-liked labels, in likelihood mode the
five most co-liked titles) — structured evidence a small model can use and that `starec train` teaches it to read;
off by default. `tool="sasrec"` (or any policy name) adds, in generate mode, the line of that recommender's ten best
candidates (`policies.tools`).
"""

from __future__ import annotations

import numpy as np

from starec_env.agents import fast
from starec_env.agents.loop import Decision, FeedbackLoop, Round
from starec_env.agents.memory import Memory
from starec_env.policies.evidence import Evidence, EvidenceSource, most_co_liked
from starec_env.policies.llm_policy import LLMPolicy
from starec_env.protocol import Cases, TrainView, sample_round

FAST_MODES = ("likelihood", "generate")


class STARecPolicy(LLMPolicy):
    name = "starec"

    def __init__(self, model=None, seed: int = 0, fast: str = "likelihood", reflect_steps: int = 2,
                 constrained: bool = True, **options):
        super().__init__(model, seed, **options)
        if fast not in FAST_MODES:
            raise ValueError(f"fast must be one of {FAST_MODES}, got {fast!r}")
        self.fast, self.reflect_steps, self.constrained = fast, reflect_steps, constrained
        evidence, popular, tool = self.prompt.evidence, self.prompt.popular, self.prompt.tool
        if tool and fast == "likelihood":
            raise ValueError(f"tool={tool!r}: a tool's line is read by a generated ranking; use fast='generate'")
        self.name = "starec-" + ("lik" if fast == "likelihood" else "gen") + ("" if reflect_steps else "-noreflect") \
            + ("-evidence" if evidence else "") + (f"-pop{popular}" if evidence and popular else "") \
            + (f"-tool-{tool}" if tool else "")
        self._source: EvidenceSource | None = None
        self.loop: FeedbackLoop | None = None

    def fit(self, train: TrainView) -> STARecPolicy:
        super().fit(train)
        self.loop = FeedbackLoop(self.llm, train, self.prompt)
        self._source = EvidenceSource.of(train, self.prompt, self.seed)
        return self

    def score_batch(self, cases: Cases) -> np.ndarray:
        memories = [Memory(int(u), self.profile(u), [int(i) for i in h]) for u, h in zip(cases.users, cases.histories)]
        self._think_slow(memories)
        scores, answers = self._rank(memories, [Round(m.history, row) for m, row in zip(memories, cases.candidates)])
        for memory, row, score, answer in zip(memories, cases.candidates, scores, answers):
            self.trace(memory.user, row, score, answer=answer, summary=memory.summary,
                       reflections=memory.reflections)
        return np.asarray(scores)

    # ------------------------------------------------------------------------------------------- slow thinking
    def _think_slow(self, memories: list[Memory]) -> None:
        """Initial summary from the history before the replayed rounds, then the feedback loop, one round at a time:
        rank the user's real item `back` steps from the end among 19 items they never chose → compare → reflect."""
        if not self.reflect_steps:
            return
        steps = self.reflect_steps
        self.loop.summarize(memories, [m.history[:-steps] for m in memories])
        rng = np.random.default_rng([self.seed, memories[0].user])
        n_candidates = self.train.valid.candidates.shape[1]
        for back in range(steps, 0, -1):
            rounds = [Round(m.history[:-back], sample_round(rng, self.train.n_items, m.history, m.history[-back],
                                                            n_candidates), m.history[-back]) for m in memories]
            for _, reflection in self.loop.step(memories, rounds, self._decide):
                if reflection is not None:
                    self.usage[f"reflection_{reflection.status}"] += 1

    def _decide(self, memories: list[Memory], rounds: list[Round]) -> list[Decision]:
        scores, _ = self._rank(memories, rounds)
        return [self.loop.top_pick(r, s) for r, s in zip(rounds, scores)]

    # ------------------------------------------------------------------------------------------- fast thinking
    def _rank(self, memories: list[Memory], rounds: list[Round]) -> tuple[list[np.ndarray], list[str]]:
        evidence = [Evidence([]) for _ in rounds] if self._source is None else self._source.evidence(
            [m.user for m in memories], [r.history for r in rounds], [r.candidates for r in rounds])
        if self.fast == "likelihood":  # the prompt lists no candidates: name the five most co-liked, by title
            named = [[f"{self.train.item_text(r.candidates[i])} ({e.counts[i]} times)" for i in most_co_liked(e.counts)]
                     for r, e in zip(rounds, evidence)]
            scores = self.loop.rank_by_likelihood(memories, rounds, named)
            for _ in rounds:
                self.count("ok")
            return scores, ["(likelihood of each candidate)"] * len(rounds)
        chats = [self.loop.ranking_chat(m, r, **e.lines()) for m, r, e in zip(memories, rounds, evidence)]
        answers = fast.rank_by_generation(self.llm, chats, [self.train.titles(r.candidates) for r in rounds],
                                          self.constrained, think=self.prompt.think)
        for parsed, _ in answers:
            self.count(parsed.status)
        return [parsed.scores() for parsed, _ in answers], [f"[{p.status}] {text}" for p, text in answers]
