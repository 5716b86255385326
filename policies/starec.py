"""STARec (arXiv 2508.18812): a per-user agent that thinks slow about the user, then ranks fast.

Slow thinking first: the agent writes a preference summary from the user's history, then replays the user's last
`reflect_steps` known interactions as ranking rounds — rank 20 candidates (the real next item + 19 sampled
negatives) → compare its top pick with the real choice → on a miss, reflect and rewrite the summary — the simulated
feedback loop. Fast thinking then ranks the test case from profile + summary + recent history, either by the
likelihood of each candidate over one cached prompt that does not list them (`fast="likelihood"`, see
`prompts.next_item_chat`) or by writing a ranked list of the listed candidates, optionally
after a `<think>` rationale (`fast="generate"`). The memory and both modes are `agents/`'s, shared with the
simulated users. `reflect_steps=0` is the paper's "w/o self-reflection" ablation (history only, no summary).
`evidence=True` adds how often candidates are liked next to the user's recent items (`policies.evidence`; in
generate mode one line of the ten most co-liked labels, in likelihood mode the five most co-liked titles) —
structured evidence a small model can use and that `starec train` teaches it to read; off by default.
"""

from __future__ import annotations

import numpy as np

from agents import fast, prompts, slow
from agents.memory import Memory
from policies.evidence import CoLikedGraph, Evidence, most_co_liked
from policies.llm_policy import LLMPolicy
from starec_env.protocol import Cases, TrainView

FAST_MODES = ("likelihood", "generate")


class STARecPolicy(LLMPolicy):
    name = "starec"

    def __init__(self, model=None, seed: int = 0, fast: str = "likelihood", reflect_steps: int = 2,
                 constrained: bool = True, think: bool = False, evidence: bool = False, popular: int = 0,
                 summary_tokens: int = 48, reflection_tokens: int = 64, **options):
        super().__init__(model, seed, **options)
        if fast not in FAST_MODES:
            raise ValueError(f"fast must be one of {FAST_MODES}, got {fast!r}")
        self.fast, self.reflect_steps, self.constrained, self.think = fast, reflect_steps, constrained, think
        self.evidence, self.popular = evidence, popular
        self.summary_tokens, self.reflection_tokens = summary_tokens, reflection_tokens
        self.name = "starec-" + ("lik" if fast == "likelihood" else "gen") + ("" if reflect_steps else "-noreflect") \
            + ("-evidence" if evidence else "") + (f"-pop{popular}" if evidence and popular else "")
        self._graph: CoLikedGraph | None = None

    def fit(self, train: TrainView) -> STARecPolicy:
        super().fit(train)
        if self.evidence:
            self._graph = CoLikedGraph(train, popular=self.popular)
        return self

    def score_batch(self, cases: Cases) -> np.ndarray:
        memories = [Memory(int(u), self.profile(u), [int(i) for i in h]) for u, h in zip(cases.users, cases.histories)]
        self._think_slow(memories)
        scores, answers = self._rank(memories, cases.candidates)
        for memory, row, score, answer in zip(memories, cases.candidates, scores, answers):
            self.trace(memory.user, row, score, answer=answer, summary=memory.summary,
                       reflections=memory.reflections)
        return np.asarray(scores)

    # ------------------------------------------------------------------------------------------- slow thinking
    def _think_slow(self, memories: list[Memory]) -> None:
        """Initial summary from the history before the replayed rounds, then rank → compare → reflect, per round."""
        if not self.reflect_steps:
            return
        steps = self.reflect_steps
        chats = [prompts.summary_chat(self.train.titles(m.history[:-steps][-self.history_length:]), m.profile)
                 for m in memories]
        for memory, summary in zip(memories, slow.summarize(self.llm, chats, self.summary_tokens)):
            memory.summary = summary
        rng = np.random.default_rng([self.seed, memories[0].user])
        for back in range(steps, 0, -1):
            rounds = [self._round(m, back, rng) for m in memories]
            views = [Memory(m.user, m.profile, m.history[:-back], m.summary) for m in memories]
            scores, _ = self._rank(views, np.array([candidates for candidates, _ in rounds]))
            misses = [(m, candidates, target, int(candidates[int(np.argmax(s))]))
                      for m, (candidates, target), s in zip(memories, rounds, scores)
                      if candidates[int(np.argmax(s))] != target]
            self._reflect(misses, back)

    def _round(self, memory: Memory, back: int, rng: np.random.Generator) -> tuple[np.ndarray, int]:
        """A replayed round: the user's real item `back` steps from the end, plus 19 items they never chose."""
        target = memory.history[-back]
        allowed = np.setdiff1d(np.arange(self.train.n_items), memory.history)
        candidates = np.append(rng.choice(allowed, 19, replace=False), target)
        return candidates[rng.permutation(len(candidates))], target

    def _reflect(self, misses: list, back: int) -> None:
        if not misses:
            return
        chats = [prompts.reflection_chat(m.summary, self.train.titles(m.history[:-back][-self.history_length:]),
                                         self.train.item_text(target), f"chose {self.train.item_text(pick)}",
                                         f"chose {self.train.item_text(target)}", m.profile)
                 for m, _, target, pick in misses]
        targets = [self.train.item_text(target) for _, _, target, _ in misses]
        results = slow.reflect(self.llm, chats, [m.summary for m, *_ in misses], targets, self.reflection_tokens)
        for (memory, _, target, pick), result in zip(misses, results):
            memory.reflections.append({"target": int(target), "predicted": pick, "before": memory.summary,
                                       "reflection": result.reflection, "after": result.summary,
                                       "status": result.status})
            memory.summary = result.summary
            self.usage[f"reflection_{result.status}"] += 1

    # ------------------------------------------------------------------------------------------- fast thinking
    def _rank(self, memories: list[Memory], candidates: np.ndarray) -> tuple[list[np.ndarray], list[str]]:
        titles = [self.train.titles(row) for row in candidates]
        histories = [self.train.titles(m.history[-self.history_length:]) for m in memories]
        evidence = [self._graph.evidence(m.history, row) if self._graph is not None else Evidence([])
                    for m, row in zip(memories, candidates)]
        if self.fast == "likelihood":  # the prompt lists no candidates: name the five most co-liked, by title
            named = [[f"{t[i]} ({e.counts[i]} times)" for i in most_co_liked(e.counts)]
                     for t, e in zip(titles, evidence)]
            chats = [prompts.next_item_chat(h, m.profile, m.summary, n)
                     for m, h, n in zip(memories, histories, named)]
            scores = fast.rank_by_likelihood(self.llm, chats, titles)
            for _ in chats:
                self.count("ok")
            return [np.asarray(s) for s in scores], ["(likelihood of each candidate)"] * len(chats)
        chats = [prompts.ranking_chat(h, t, m.profile, m.summary, think=self.think, evidence=e.line(),
                                      popular=e.popular_line())
                 for m, h, t, e in zip(memories, histories, titles, evidence)]
        answers = fast.rank_by_generation(self.llm, chats, titles, self.constrained, think=self.think)
        for parsed, _ in answers:
            self.count(parsed.status)
        return [parsed.scores() for parsed, _ in answers], [f"[{p.status}] {text}" for p, text in answers]
