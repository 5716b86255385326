"""Finding, verifying and reading raw data files: plain, gzip or inside an official zip, wherever they are.

Resolution order: explicit path → `$STAREC_DATA_DIR` → `./data` → user cache → official download.
Every failure is a `DataError` that names the file, the line and what was expected, so nothing fails silently.
"""

from __future__ import annotations

import gzip
import io
import os
import re
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from tqdm.auto import tqdm

from starec_env.cache import cache_dir, file_sha256


class DataError(Exception):
    """Raw data is missing, corrupt or malformed; the message says which file, which line and what was expected."""


@dataclass(frozen=True)
class Source:
    """One raw file: a path on disk (plain or `.gz`), or a member of a zip archive."""

    path: Path
    member: str | None = None

    def __str__(self) -> str:
        return f"{self.path}!{self.member}" if self.member else str(self.path)


@dataclass(frozen=True)
class Download:
    """An official source for users who have none of the files locally."""

    url: str
    filename: str
    sha256: str | None  # None: the publisher gives no checksum; the first download's hash is pinned beside it


def iter_lines(source: Source, encoding: str = "utf-8") -> Iterator[tuple[int, str]]:
    """Yield (1-based line number, line without newline); a truncated gzip or zip becomes a DataError."""
    try:
        with _open_binary(source) as raw, io.TextIOWrapper(raw, encoding=encoding, newline=None) as text:
            for number, line in enumerate(text, start=1):
                yield number, line.rstrip("\n")
    except (EOFError, gzip.BadGzipFile, zipfile.BadZipFile, OSError) as error:
        raise DataError(f"{source}: truncated or corrupt file ({error}); re-download or re-copy it") from error
    except UnicodeDecodeError as error:
        raise DataError(f"{source}: not valid {encoding} text ({error})") from error


def _open_binary(source: Source):
    if source.member is not None:
        return zipfile.ZipFile(source.path).open(source.member)
    if source.path.suffix == ".gz":
        return gzip.open(source.path, "rb")
    return open(source.path, "rb")


def locate(
    subdir: str,
    groups: tuple[tuple[str, ...], ...],
    path: str | os.PathLike | None = None,
    downloads: tuple[Download, ...] = (),
    archive_prefix: str | None = None,
) -> dict[str, Source]:
    """Find one file from each group of alternative names; returns {first name of group: Source}.

    Each name is tried plain and gzipped, in `root/subdir` and in `root`; a zip whose name matches a download's
    filename is searched too (members under `archive_prefix`). An explicit `path` is the only place looked at.
    """
    roots = [Path(path)] if path is not None else _default_roots()
    for root in roots:
        found = _find_in(root, subdir, groups, downloads, archive_prefix)
        if found is not None:
            for source in found.values():
                verify_source(source)
            return found
    if path is not None:
        raise DataError(_missing_message(subdir, groups, [Path(path)]))
    if downloads and os.environ.get("STAREC_OFFLINE") != "1":
        target = cache_dir("data", subdir)
        try:
            for download in downloads:
                fetch(download, target / download.filename)
        except DataError as error:
            raise DataError(f"{_missing_message(subdir, groups, roots)}\nDownload failed too: {error}") from error
        found = _find_in(target, "", groups, downloads, archive_prefix)
        if found is not None:
            return found
    raise DataError(_missing_message(subdir, groups, roots))


def _default_roots() -> list[Path]:
    roots = []
    if os.environ.get("STAREC_DATA_DIR"):
        roots.append(Path(os.environ["STAREC_DATA_DIR"]))
    roots.append(Path("data"))
    roots.append(cache_dir("data"))
    return roots


def _find_in(root, subdir, groups, downloads, archive_prefix) -> dict[str, Source] | None:
    if root.is_file() and zipfile.is_zipfile(root):
        return _find_in_zip(root, groups, archive_prefix)
    for folder in (root / subdir, root) if subdir else (root,):
        found = {}
        for group in groups:
            hit = next((folder / f"{name}{ext}" for name in group for ext in ("", ".gz")
                        if (folder / f"{name}{ext}").is_file()), None)
            if hit is None:
                break
            found[group[0]] = Source(hit)
        if len(found) == len(groups):
            return found
        for download in downloads:
            archive = folder / download.filename
            if archive.is_file() and archive.suffix == ".zip":
                if not zipfile.is_zipfile(archive):
                    raise DataError(f"{archive}: truncated or corrupt zip (a download cut short?); delete it and "
                                    "download it again")
                return _find_in_zip(archive, groups, archive_prefix)
    return None


def _find_in_zip(archive: Path, groups, prefix) -> dict[str, Source] | None:
    names = set(zipfile.ZipFile(archive).namelist())
    found = {}
    for group in groups:
        member = next((f"{prefix or ''}{name}" for name in group if f"{prefix or ''}{name}" in names), None)
        if member is None:
            return None
        found[group[0]] = Source(archive, member)
    return found


def _missing_message(subdir, groups, roots) -> str:
    wanted = ", ".join(" or ".join(f"{name}[.gz]" for name in group) for group in groups)
    places = "\n  ".join(str(root / subdir) for root in roots)
    return (f"dataset files not found: {wanted}.\nLooked in:\n  {places}\n"
            f"Put them in $STAREC_DATA_DIR/{subdir}/ (or ./data/{subdir}/), or pass the folder explicitly.")


def verify_source(source: Source) -> None:
    """Check a file against a SHA256SUMS list next to it or one level up, when such a list names it."""
    file = source.path.resolve()
    expected = pinned_sha256(file)
    if expected is not None:
        actual = file_sha256(file)
        if actual != expected:
            raise DataError(f"{file}: SHA-256 mismatch: expected {expected}, got {actual}. "
                            "The file is corrupt or not the release this checksum names; re-download it.")


def pinned_sha256(file: Path) -> str | None:
    """The expected hash of `file` from a `SHA256SUMS` in its folder or the two above it, or a `<file>.sha256`."""
    beside = file.with_name(file.name + ".sha256")
    if beside.is_file():
        return _checksum_lines(beside, file.parent).get(file) or _checksum_lines(beside, file.parent, bare=True)
    for folder in (file.parent, file.parent.parent, file.parent.parent.parent):
        listing = folder / "SHA256SUMS"
        if listing.is_file():
            found = _checksum_lines(listing, folder).get(file)
            if found:
                return found
    return None


def _checksum_lines(listing: Path, folder: Path, bare: bool = False):
    """{file: lower-case hex} from `sha256sum` output (`HEX  name` or `HEX *name`, either case); with `bare`, the one
    hash of a `.sha256` file. A line of another form is a DataError naming it, not something to skip."""
    found = {}
    for number, line in enumerate(listing.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split(maxsplit=1)
        if not re.fullmatch(r"[0-9a-fA-F]{64}", parts[0]) or (len(parts) < 2 and not bare):
            raise DataError(f"{listing}, line {number}: expected '<64 hex digits>  <file name>' as sha256sum writes "
                            f"it, got {line[:80]!r}")
        if bare:
            return parts[0].lower()
        found[(folder / parts[1].lstrip("*")).resolve()] = parts[0].lower()
    return found


def _incomplete(file: Path, expected_bytes: int | None, name: str) -> str | None:
    """Why a finished download (`file`, to be called `name`) cannot be the whole file (fewer bytes than announced, a
    broken gzip or zip), or None: checked before a first download's hash is pinned, so a truncated file is never
    pinned as the original."""
    size = file.stat().st_size
    if expected_bytes is not None and size != expected_bytes:
        return f"got {size} of {expected_bytes} bytes"
    if name.endswith(".gz"):
        try:
            with gzip.open(file, "rb") as handle:
                while handle.read(1 << 20):
                    pass
        except (EOFError, OSError) as error:
            return f"not a complete gzip file ({error})"
    if name.endswith(".zip") and not zipfile.is_zipfile(file):
        return "not a complete zip archive"
    return None


def fetch(download: Download, dest: Path) -> Path:
    """Download with a progress bar into `dest`, verify its SHA-256, pin it; a mismatch removes the file."""
    if dest.is_file():
        return dest
    partial = dest.with_name(dest.name + ".part")
    try:
        with urllib.request.urlopen(download.url, timeout=30) as response, open(partial, "wb") as out:
            total = int(response.headers.get("Content-Length") or 0) or None
            with tqdm(total=total, unit="B", unit_scale=True, desc=f"download {download.filename}") as bar:
                while block := response.read(1 << 20):
                    out.write(block)
                    bar.update(len(block))
    except (urllib.error.URLError, OSError) as error:
        partial.unlink(missing_ok=True)
        raise DataError(f"cannot download {download.url}: {error}") from error
    problem = _incomplete(partial, total, dest.name)
    if problem:
        partial.unlink()
        raise DataError(f"{download.url}: {problem}; nothing was kept, try again")
    actual = file_sha256(partial)
    if download.sha256 is not None and actual != download.sha256:
        partial.unlink()
        raise DataError(f"{download.url}: SHA-256 mismatch: expected {download.sha256}, got {actual}")
    partial.rename(dest)
    dest.with_name(dest.name + ".sha256").write_text(f"{actual}  {dest.name}\n")
    return dest
