"""LLMRank (Hou et al., ECIR 2024): zero-shot ranking of the candidates from the user's history, with bootstrapping.

`style` picks one of the paper's prompts (`agents.prompts.LLMRANK_STYLES`). Each case is ranked `bootstrap` times
with the candidates in shuffled orders (the model's position bias averages out), and the per-order scores are summed
back at the candidates' real positions. `constrained=True` decodes under the label-list constraint (every answer a
full ranking); `False` is the original free-form generation, read by the shared parser — the two settings give the
parse-failure rate with and without the constraint.
"""

from __future__ import annotations

import numpy as np

from starec_env.agents.fast import rank_by_generation
from starec_env.agents.prompts import llmrank_chat
from starec_env.policies.llm_policy import LLMPolicy
from starec_env.protocol import Cases


class LLMRankPolicy(LLMPolicy):
    name = "llmrank"

    def __init__(self, model=None, seed: int = 0, style: str = "recency", bootstrap: int = 3,
                 constrained: bool = True, **options):
        super().__init__(model, seed, **options)
        self.style, self.bootstrap, self.constrained = style, bootstrap, constrained
        self.name = f"llmrank{'' if constrained else '-free'}"

    def score_batch(self, cases: Cases) -> np.ndarray:
        rng = np.random.default_rng([self.seed, int(cases.users[0])])
        orders = [[rng.permutation(cases.candidates.shape[1]) for _ in range(self.bootstrap)] for _ in cases.users]
        chats, shown = [], []
        for history, row, row_orders in zip(cases.histories, cases.candidates, orders):
            for order in row_orders:
                shown.append(self.train.titles(row[order]))
                chats.append(llmrank_chat(self.train.titles(history[-self.prompt.history:]), shown[-1], self.style))
        answers = iter(rank_by_generation(self.llm, chats, shown, constrained=self.constrained))
        scores = np.zeros(cases.candidates.shape)
        for b, row_orders in enumerate(orders):
            texts = []
            for order in row_orders:
                parsed, text = next(answers)
                scores[b, order] += parsed.scores()
                self.count(parsed.status)
                texts.append(f"[{parsed.status}] {text}")
            self.trace(cases.users[b], cases.candidates[b], scores[b], answer="\n".join(texts))
        return scores
