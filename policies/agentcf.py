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

from starec_env.agents import fast, slow
from starec_env.agents.llm import Sampling
from starec_env.agents.loop import Decision, FeedbackLoop, Round
from starec_env.agents.memory import Memory
from starec_env.agents.prompts import agentcf_item_chat, ranking_chat
from starec_env.policies.llm_policy import LLMPolicy
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
        self.loop: FeedbackLoop | None = None

    def fit(self, train: TrainView) -> AgentCFPolicy:
        super().fit(train)
        self.loop = FeedbackLoop(self.llm, train, self.prompt, describe=self.describe)
        counts = np.bincount(np.concatenate(train.sequences), minlength=train.n_items).astype(float) + 1.0
        self._popularity = counts / counts.sum()
        if self.variant == "retrieval":
            from starec_env.policies.embeddings import load_embedder

            self._embedder = load_embedder()
        return self

    def score_batch(self, cases: Cases) -> np.ndarray:
        memories = self._train_users(cases)
        titles = [[self.describe(i) for i in row] for row in cases.candidates]
        chats = [ranking_chat(self.loop.recent(h) if self.variant != "basic" else [], t, m.profile, self._context(m, t))
                 for m, h, t in zip(memories, cases.histories, titles)]
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
            for user, history in fresh:
                self.users[user] = Memory(user, self.profile(user), history)
            memories = [self.users[u] for u, _ in fresh]
            self.loop.summarize(memories, [h[:-steps] for _, h in fresh])
            rng = np.random.default_rng([self.seed, fresh[0][0]])
            for back in range(steps, 0, -1):
                rounds = [Round(m.history[:-back], (m.history[-back], self._negative(m.history, rng)), m.history[-back])
                          for m in memories]
                self._train_step(memories, rounds)
        return [self.users[int(u)] for u in cases.users]

    def _train_step(self, memories: list[Memory], rounds: list[Round]) -> None:
        """The user agent picks between the real item and a popular negative; a miss starts collaborative reflection:
        the user's self-description is rewritten, then both items' descriptions from that user's point of view."""
        steps = self.loop.step(memories, rounds, self._choose_pair)
        wrong = [(m, r) for m, r, (_, reflection) in zip(memories, rounds, steps) if reflection is not None]
        self.usage["train_choices"] += len(rounds)
        self.usage["train_wrong"] += len(wrong)
        if wrong:
            self._rewrite_items(wrong)

    def _choose_pair(self, memories: list[Memory], rounds: list[Round]) -> list[Decision]:
        chats = [ranking_chat(self.loop.recent(r.history), [self.describe(i) for i in r.candidates], m.profile,
                              m.summary) for m, r in zip(memories, rounds)]
        scores = fast.rank_by_likelihood(self.llm, chats, [self.train.titles(r.candidates) for r in rounds])
        picks = [r.candidates[1] if s[1] >= s[0] else r.candidates[0] for r, s in zip(rounds, scores)]
        return [Decision(int(pick), f"chose {self.describe(pick)}") for pick in picks]

    def _rewrite_items(self, wrong: list[tuple[Memory, Round]]) -> None:
        item_chats, item_ids = [], []
        for memory, round_ in wrong:
            for item, liked in zip(round_.candidates, (True, False)):
                item_chats.append(agentcf_item_chat(self.describe(item), memory.summary, liked))
                item_ids.append(int(item))
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
