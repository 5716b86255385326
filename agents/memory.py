"""What a cognitive agent remembers about one user: profile, history, preference summary and reflection log.

The summary is the part slow thinking rewrites; the history grows with the interactions the user makes. Everything
is plain JSON, so a whole population's memories can be saved, shared and reloaded without pickle.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable

from starec_env.files import write_json

MEMORY_FORMAT = 1


@dataclass
class Memory:
    user: int  # protocol user id
    profile: str = ""  # demographics as text (ML-1M); empty where the data has none (CDs)
    history: list[int] = field(default_factory=list)  # item ids, oldest first
    summary: str = ""  # natural-language preference summary, rewritten by slow thinking
    reflections: list[dict] = field(default_factory=list)  # one record per reflection: what was seen and changed

    def recent(self, count: int) -> list[int]:
        return self.history[-count:] if count else []

    def remember(self, item: int) -> None:
        self.history.append(int(item))

    def record_reflection(self, step: int, target: int, predicted: int, reflection) -> None:
        """Log what slow thinking saw and wrote (an `agents.slow.Reflection`) about the round after `step` known
        interactions, and adopt its rewritten summary."""
        self.reflections.append({"step": int(step), "target": int(target), "predicted": int(predicted),
                                 "before": self.summary, "reflection": reflection.reflection,
                                 "after": reflection.summary, "status": reflection.status})
        self.summary = reflection.summary

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> Memory:
        return cls(**{key: data[key] for key in ("user", "profile", "history", "summary", "reflections")
                      if key in data})


def save_memories(memories: Iterable[Memory], path: str | Path, **metadata) -> Path:
    """Write memories (and e.g. the dataset they belong to) as one JSON document."""
    document = {"format": MEMORY_FORMAT, **metadata, "memories": [m.to_dict() for m in memories]}
    return write_json(path, document, indent=1)


def load_memories(path: str | Path) -> tuple[list[Memory], dict]:
    """Memories and the metadata saved beside them; a file in another format is a clear error."""
    path = Path(path)
    try:
        document = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: not a memory file (invalid JSON at line {error.lineno}: {error.msg})") from None
    if not isinstance(document, dict) or document.get("format") != MEMORY_FORMAT:
        raise ValueError(f"{path}: expected a STARec memory file with format {MEMORY_FORMAT}")
    memories = [Memory.from_dict(entry) for entry in document.pop("memories")]
    document.pop("format")
    return memories, document
