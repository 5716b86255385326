"""The user cache: where processed protocols, downloads and converted models live, keyed by their inputs."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path


def cache_dir(*parts: str) -> Path:
    """`$STAREC_CACHE_DIR`, else `$XDG_CACHE_HOME/starec`, else `~/.cache/starec`; created on demand."""
    root = os.environ.get("STAREC_CACHE_DIR")
    if not root:
        root = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "starec"
    path = Path(root).joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path


def file_sha256(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def config_key(*objects: object, length: int = 16) -> str:
    """A short stable hash of JSON-able inputs, for naming cache entries."""
    blob = json.dumps(objects, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:length]
