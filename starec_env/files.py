"""Results, caches and checkpoints are written so that a kill never leaves half a file: each is written beside its
place and renamed over it in one step, and a file that cannot be read back is an error that says what to do."""

from __future__ import annotations

import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """A scratch path in the same folder, with the same ending (for writers that pick a format by it): on success it
    replaces `path` in one rename; on any failure it is removed and `path` is left as it was."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, scratch = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=f".tmp{path.suffix}")
    os.close(handle)
    try:
        yield Path(scratch)
        os.replace(scratch, path)
    except BaseException:
        Path(scratch).unlink(missing_ok=True)
        raise


def write_text(path: str | os.PathLike, text: str) -> Path:
    with atomic_path(path) as scratch:
        scratch.write_text(text, encoding="utf-8")
    return Path(path)


def write_json(path: str | os.PathLike, data: Any, **options) -> Path:
    return write_text(path, json.dumps(data, **options))


def read_json(path: str | os.PathLike, what: str = "file") -> Any:
    """The JSON at `path`; a file cut short or garbled is a ValueError that names it and the remedy."""
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{path}: this {what} is not valid JSON ({error}); it was cut short or edited by hand. "
                         "Delete it to start that part over.") from None
