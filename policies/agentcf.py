"""AgentCF (Zhang et al., WWW 2024): user agents and item agents that learn from each other by reflection.

Every user and every item has a text memory. Training replays a user's last `train_steps` training interactions:
the user agent chooses between the real next item and a popularity-sampled negative; a wrong choice triggers
collaborative reflection — the user's self-description is rewritten (slow thinking, as in `agents.slow`) and both
items' descriptions are rewritten from the user's point of view; a right choice reinforces them (counted, no
rewrite). Item memories are shared, so what one user teaches an item reaches every later user. Ranking variants:
`basic` (self-description + candidate descriptions), `history` (+ recent items), `retrieval` (+ the user's past
reflections most similar to the candidates, by MiniLM embeddings; extra `embed`). Users are trained when they
are first scored, on training interactions only, so a CPU run pays only for the users it evaluates.
"""

from __future__ import annotations

import numpy as np

from agents import fast, slow
from agents.llm import Sampling
from agents.memory import Memory
from agents.prompts import agentcf_item_chat, ranking_chat, reflection_chat, summary_chat
from policies.llm_policy import LLMPolicy
from starec_env.protocol import Cases, TrainView

VARIANTS = ("basic", "history", "retrieval")


class AgentCFPolicy(LLMPolicy):
    name = "agentcf"

    def __init__(self, model=None, seed: int = 0, variant: str = "basic", train_steps: int = 2,
                 description_tokens: int = 40, **options):
        super().__init__(model, seed, **options)
        if variant not in VARIANTS:
            raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
        self.variant, self.train_steps, self.description_tokens = variant, train_steps, description_tokens
        self.name = "agentcf" if variant == "basic" else f"agentcf-{variant}"
        self.users: dict[int, Memory] = {}
        self.items: dict[int, str] = {}  # item agent memories: learned descriptions
        self._popularity: np.ndarray | None = None
        self._embedder = None

    def fit(self, train: TrainView) -> AgentCFPolicy:
        super().fit(train)
        counts = np.bincount(np.concatenate(train.sequences), minlength=train.n_items).astype(float) + 1.0
        self._popularity = counts / counts.sum()
        if self.variant == "retrieval":
            from policies.embeddings import load_embedder

            self._embedder = load_embedder()
        return self

    def score_batch(self, cases: Cases) -> np.ndarray:
        memories = self._train_users(cases)
        titles = [[self.describe(i) for i in row] for row in cases.candidates]
        chats = [ranking_chat(self.train.titles(h[-self.history_length:]) if self.variant != "basic" else [], t,
                              m.profile, self._context(m, t)) for m, h, t in zip(memories, cases.histories, titles)]
        scores = fast.rank_by_likelihood(self.llm, chats, [self.train.titles(row) for row in cases.candidates])
        for memory, row, score in zip(memories, cases.candidates, scores):
            self.count("ok")
            self.trace(memory.user, row, score, summary=memory.summary, reflections=memory.reflections)
        return np.asarray(scores)

    def state(self) -> dict:
        """Scoring state plus every agent's memory: later users depend on what earlier ones taught the items."""
        return {**super().state(), "users": [m.to_dict() for m in self.users.values()],
                "items": {str(item): text for item, text in self.items.items()}}

    def load_state(self, state: dict) -> None:
        super().load_state(state)
        self.users = {m["user"]: Memory.from_dict(m) for m in state["users"]}
        self.items = {int(item): text for item, text in state["items"].items()}

    def describe(self, item: int) -> str:
        """An item as its agent knows it: title, plus what it learned from users."""
        learned = self.items.get(int(item))
        return f"{self.train.item_text(item)} — {learned}" if learned else self.train.item_text(item)

    # ------------------------------------------------------------------------------------------------ training
    def _train_users(self, cases: Cases) -> list[Memory]:
        fresh = [(int(u), [int(i) for i in h]) for u, h in zip(cases.users, cases.histories)
                 if int(u) not in self.users]
        if fresh:
            steps = self.train_steps
            chats = [summary_chat(self.train.titles(h[:-steps][-self.history_length:]), self.profile(u))
                     for u, h in fresh]
            for (user, history), summary in zip(fresh, slow.summarize(self.llm, chats)):
                self.users[user] = Memory(user, self.profile(user), history, summary)
            rng = np.random.default_rng([self.seed, fresh[0][0]])
            for back in range(steps, 0, -1):
                self._train_step([self.users[u] for u, _ in fresh], back, rng)
        return [self.users[int(u)] for u in cases.users]

    def _train_step(self, memories: list[Memory], back: int, rng: np.random.Generator) -> None:
        """The user agent picks between the real item and a popular negative; a miss starts collaborative reflection."""
        pairs = [(m.history[-back], self._negative(m.history, rng)) for m in memories]
        chats = [ranking_chat(self.train.titles(m.history[:-back][-self.history_length:]),
                              [self.describe(p), self.describe(n)], m.profile, m.summary)
                 for m, (p, n) in zip(memories, pairs)]
        scores = fast.rank_by_likelihood(self.llm, chats, [self.train.titles(pair) for pair in pairs])
        wrong = [(m, p, n) for m, (p, n), s in zip(memories, pairs, scores) if s[1] >= s[0]]
        self.usage["train_choices"] += len(pairs)
        self.usage["train_wrong"] += len(wrong)
        if wrong:
            self._reflect(wrong, back)

    def _reflect(self, wrong: list, back: int) -> None:
        chats = [reflection_chat(m.summary, self.train.titles(m.history[:-back][-self.history_length:]),
                                 self.describe(p), f"chose {self.describe(n)}", f"chose {self.describe(p)}", m.profile)
                 for m, p, n in wrong]
        results = slow.reflect(self.llm, chats, [m.summary for m, _, _ in wrong],
                               [self.train.item_text(p) for _, p, _ in wrong])
        item_chats, item_ids = [], []
        for (memory, positive, negative), result in zip(wrong, results):
            memory.reflections.append({"target": positive, "predicted": negative, "before": memory.summary,
                                       "reflection": result.reflection, "after": result.summary,
                                       "status": result.status})
            memory.summary = result.summary
            for item, liked in ((positive, True), (negative, False)):
                item_chats.append(agentcf_item_chat(self.describe(item), memory.summary, liked))
                item_ids.append(item)
        answers = self.llm.generate(item_chats, Sampling(max_tokens=self.description_tokens, stop=("\n",)))
        for item, (completion,) in zip(item_ids, answers):
            if completion.text:
                self.items[item] = slow.clip(f"suits people who {completion.text}")[:200]

    def _negative(self, history: list[int], rng: np.random.Generator) -> int:
        while True:
            item = int(rng.choice(len(self._popularity), p=self._popularity))
            if item not in history:
                return item

    def _context(self, memory: Memory, candidates: list[str]) -> str:
        """The self-description, plus (retrieval) the past reflections closest to the candidates."""
        if self.variant != "retrieval" or not memory.reflections:
            return memory.summary
        texts = [r["reflection"] for r in memory.reflections]
        vectors = self._embedder(texts + [" ".join(candidates)])
        best = int(np.argmax(vectors[:-1] @ vectors[-1]))
        return f"{memory.summary} Earlier insight: {texts[best]}"
