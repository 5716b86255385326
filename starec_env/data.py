"""Datasets in their original formats: MovieLens-1M, Amazon CDs and Vinyl (2014/2018), RecBole atomic folders.

Every loader returns the same `Dataset`: contiguous integer ids (original ids kept in `raw_id`), interactions sorted
by user then time (file order breaks ties), and a text catalogue that prompts and reports are rendered from.
"""

from __future__ import annotations

import ast
import html
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from starec_env.cache import file_sha256
from starec_env.sources import DataError, Download, Source, iter_lines, locate

ML1M_DOWNLOAD = Download(
    url="https://files.grouplens.org/datasets/movielens/ml-1m.zip",
    filename="ml-1m.zip",
    sha256="a6898adb50b9ca05aa231689da44c217cb524e7ebd39d264c56e2832f2c54e20",
)
AMAZON_CDS_DOWNLOADS = (  # UCSD publishes no checksums: the first download's SHA-256 is pinned beside the file.
    Download("https://jmcauley.ucsd.edu/data/amazon_v2/categoryFilesSmall/CDs_and_Vinyl_5.json.gz",
             "CDs_and_Vinyl_5.json.gz", None),
    Download("https://jmcauley.ucsd.edu/data/amazon_v2/metaFiles2/meta_CDs_and_Vinyl.json.gz",
             "meta_CDs_and_Vinyl.json.gz", None),
)
ML1M_AGES = {1: "under 18", 18: "18-24", 25: "25-34", 35: "35-44", 45: "45-49", 50: "50-55", 56: "56+"}
ML1M_OCCUPATIONS = (
    "other", "academic/educator", "artist", "clerical/admin", "college/grad student", "customer service",
    "doctor/health care", "executive/managerial", "farmer", "homemaker", "K-12 student", "lawyer", "programmer",
    "retired", "sales/marketing", "scientist", "self-employed", "technician/engineer", "tradesman/craftsman",
    "unemployed", "writer",
)


@dataclass
class Dataset:
    """Interactions plus the catalogue that gives every id its text."""

    name: str
    interactions: pd.DataFrame  # user_id, item_id, rating, timestamp
    items: pd.DataFrame  # item_id, raw_id, title, attributes, ...
    users: pd.DataFrame | None  # user_id, raw_id, profile, ...
    sources: dict[str, str] = field(default_factory=dict)  # file → SHA-256
    notes: list[str] = field(default_factory=list)

    @property
    def n_users(self) -> int:
        return len(self.users) if self.users is not None else int(self.interactions["user_id"].max()) + 1

    @property
    def n_items(self) -> int:
        return len(self.items)

    def item_text(self, item_id: int) -> str:
        """The line a prompt shows for an item: title plus its attributes."""
        row = self.items.iloc[int(item_id)]
        return f"{row.title} ({row.attributes})" if row.attributes else str(row.title)

    def user_profile(self, user_id: int) -> str:
        if self.users is None:
            return ""
        return str(self.users.iloc[int(user_id)].profile)


DATASETS = ("ml-1m", "amazon-cds")


def find_files(name: str, path: str | os.PathLike | None = None) -> dict[str, Source]:
    """Locate (and verify, or download) the original files of a dataset without parsing them."""
    if name == "ml-1m":
        return locate("ml-1m", (("ratings.dat",), ("movies.dat",), ("users.dat",)), path,
                      downloads=(ML1M_DOWNLOAD,), archive_prefix="ml-1m/")
    if name == "amazon-cds":
        return locate("amazon-cds",
                      (("CDs_and_Vinyl_5.json", "reviews_CDs_and_Vinyl_5.json"), ("meta_CDs_and_Vinyl.json",)),
                      path, downloads=AMAZON_CDS_DOWNLOADS)
    raise ValueError(f"unknown dataset {name!r}; expected one of {DATASETS} (RecBole folders: load_atomic)")


def load_dataset(name: str, path: str | os.PathLike | None = None) -> Dataset:
    """Load `ml-1m` or `amazon-cds` from its original files (see `starec_env.sources` for where they are looked for)."""
    return parse_dataset(name, find_files(name, path))


def parse_dataset(name: str, files: dict[str, Source]) -> Dataset:
    return load_ml1m(files) if name == "ml-1m" else load_amazon_cds(files)


def checksums(files: dict[str, Source]) -> dict[str, str]:
    """File → SHA-256, recorded beside every result."""
    return {source.member or source.path.name: file_sha256(source.path) for source in files.values()}


# ---------------------------------------------------------------------------------------------------------- ML-1M
def load_ml1m(files: dict[str, Source]) -> Dataset:
    ratings = _read_delimited(files["ratings.dat"], ("user", "item", "rating", "timestamp"), int_columns=4)
    _check_range(ratings, "rating", 1, 5, files["ratings.dat"])
    movies = _read_delimited(files["movies.dat"], ("item", "title", "genres"), int_columns=1, encoding="latin-1")
    users = _read_delimited(files["users.dat"], ("user", "gender", "age", "occupation", "zip"), int_columns=1)

    items = _ml1m_items(movies)
    user_table = _ml1m_users(users, files["users.dat"])
    item_index = pd.Index(items["raw_id"])
    user_index = pd.Index(user_table["raw_id"])
    _check_known(ratings, "item", item_index, files["ratings.dat"], "movies.dat")
    _check_known(ratings, "user", user_index, files["ratings.dat"], "users.dat")
    interactions = _sorted_interactions(
        user_index.get_indexer(ratings["user"]), item_index.get_indexer(ratings["item"]),
        ratings["rating"], ratings["timestamp"])
    notes = [f"ratings.dat: {len(ratings):,} ratings from {ratings['user'].nunique():,} users "
             f"(ids {ratings['user'].min()}-{ratings['user'].max()})"]
    if len(ratings) != 1_000_209:
        notes.append("this is a subset of ML-1M (the full file has 1,000,209 ratings from 6,040 users)")
    return Dataset("ml-1m", interactions, items, user_table, checksums(files), notes)


def _ml1m_items(movies: pd.DataFrame) -> pd.DataFrame:
    parsed = movies["title"].str.extract(r"^(?P<title>.*?)\s*\((?P<year>\d{4})\)\s*$")
    title = parsed["title"].fillna(movies["title"]).map(_front_article)
    genres = movies["genres"].str.replace("|", ", ", regex=False)
    year = pd.to_numeric(parsed["year"], errors="coerce").astype("Int64")
    attributes = year.astype(str).where(year.notna(), "") + "; " + genres
    return pd.DataFrame({
        "item_id": np.arange(len(movies)), "raw_id": movies["item"].to_numpy(), "title": title,
        "year": year, "genres": genres, "attributes": attributes.str.strip("; "), "title_flag": "",
    })


def _front_article(title: str) -> str:
    """'Matrix, The' → 'The Matrix': the catalogue's inversion reads badly in a prompt."""
    match = re.match(r"^(.*), (The|A|An)$", title)
    return f"{match.group(2)} {match.group(1)}" if match else title


def _ml1m_users(users: pd.DataFrame, source: Source) -> pd.DataFrame:
    age = pd.to_numeric(users["age"], errors="coerce")
    occupation = pd.to_numeric(users["occupation"], errors="coerce")
    bad = ~users["gender"].isin(["M", "F"]) | ~age.isin(list(ML1M_AGES)) | ~occupation.between(0, 20)
    if bad.any():
        row = users[bad].iloc[0]
        raise DataError(f"{source}, line {row.line}: expected gender M/F, an ML-1M age code "
                        f"{sorted(ML1M_AGES)} and occupation 0-20")
    gender = users["gender"].map({"M": "male", "F": "female"})
    age_text = age.map(ML1M_AGES)
    occ_text = occupation.map(dict(enumerate(ML1M_OCCUPATIONS)))
    return pd.DataFrame({
        "user_id": np.arange(len(users)), "raw_id": users["user"].to_numpy(), "gender": gender,
        "age": age_text, "occupation": occ_text,
        "profile": "gender: " + gender + "; age: " + age_text + "; occupation: " + occ_text,
    })


# ------------------------------------------------------------------------------------------------- Amazon CDs
def load_amazon_cds(files: dict[str, Source]) -> Dataset:
    reviews = _read_reviews(files["CDs_and_Vinyl_5.json"])
    asins = pd.Index(pd.unique(reviews["asin"]))
    meta = _read_meta(files["meta_CDs_and_Vinyl.json"], set(asins))
    items = _amazon_items(asins, meta)
    users = pd.Index(pd.unique(reviews["user"]))
    interactions = _sorted_interactions(users.get_indexer(reviews["user"]), asins.get_indexer(reviews["asin"]),
                                        reviews["rating"], reviews["timestamp"])
    flagged = items["title_flag"].value_counts().to_dict()
    notes = [f"reviews: {len(reviews):,} from {len(users):,} users on {len(asins):,} items",
             f"titles flagged: {flagged.get('html_debris', 0)} HTML debris, {flagged.get('missing', 0)} missing "
             "(shown as 'Unknown CD (ASIN)')"]
    user_table = pd.DataFrame({"user_id": np.arange(len(users)), "raw_id": users, "profile": ""})
    return Dataset("amazon-cds", interactions, items, user_table, checksums(files), notes)


def _read_reviews(source: Source) -> pd.DataFrame:
    rows = []
    for number, line in iter_lines(source):
        if not line.strip():
            continue
        record = _parse_record(line, source, number)
        try:
            rows.append((str(record["reviewerID"]), str(record["asin"]), float(record["overall"]),
                         int(record["unixReviewTime"])))
        except (KeyError, TypeError, ValueError) as error:
            raise DataError(f"{source}, line {number}: expected fields reviewerID, asin, overall (number) and "
                            f"unixReviewTime (integer); {type(error).__name__}: {error}") from error
    if not rows:
        raise DataError(f"{source} is empty: expected one JSON review per line")
    return pd.DataFrame(rows, columns=["user", "asin", "rating", "timestamp"])


_ASIN = re.compile(r"""['"]asin['"]\s*:\s*['"]([^'"]+)['"]""")


def _read_meta(source: Source, wanted: set[str]) -> dict[str, dict]:
    """Metadata of the wanted items only (the full file is large): JSON (2018) or a Python literal (2014)."""
    meta: dict[str, dict] = {}
    for number, line in iter_lines(source):
        match = _ASIN.search(line)
        if match is None:
            if line.strip():
                raise DataError(f"{source}, line {number}: expected a metadata record with an 'asin' field")
            continue
        if match.group(1) in wanted:
            meta[match.group(1)] = _parse_record(line, source, number)
    return meta


def _parse_record(line: str, source: Source, number: int) -> dict:
    """One JSON object, or (2014 files) one Python dict literal — parsed with `ast.literal_eval`, never `eval`."""
    try:
        record = json.loads(line)
    except json.JSONDecodeError:
        try:
            record = ast.literal_eval(line)
        except (ValueError, SyntaxError) as error:
            raise DataError(f"{source}, line {number}: not a JSON object or Python dict literal: "
                            f"{line[:80]!r}") from error
    if not isinstance(record, dict):
        raise DataError(f"{source}, line {number}: expected an object, got {type(record).__name__}")
    return record


def clean_title(raw: object) -> tuple[str, str]:
    """(clean title, flag): flag is '' for a usable title, 'html_debris' or 'missing' otherwise.

    Source metadata holds scraped markup such as `<span class="a-size-medium ...` and entities such as `Caf&eacute;`:
    tags are stripped, entities unescaped, and a title with nothing left is flagged rather than shown.
    """
    if not isinstance(raw, str) or not raw.strip():
        return "", "missing"
    text = re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]*>?", " ", raw))).strip()
    return (text, "") if text else ("", "html_debris")


def _amazon_items(asins: pd.Index, meta: dict[str, dict]) -> pd.DataFrame:
    titles, flags, categories = [], [], []
    for asin in asins:
        record = meta.get(asin)
        title, flag = clean_title(record.get("title") if record else None)
        titles.append(title or f"Unknown CD ({asin})")
        flags.append(flag)
        category = record.get("category") if record else None
        categories.append(", ".join(c for c in category if c != "CDs & Vinyl") if isinstance(category, list) else "")
    return pd.DataFrame({"item_id": np.arange(len(asins)), "raw_id": asins, "title": titles,
                         "attributes": categories, "title_flag": flags})


# ----------------------------------------------------------------------------------------------- shared helpers
def _read_delimited(source: Source, columns: tuple[str, ...], int_columns: int,
                    encoding: str = "utf-8", sep: str = "::") -> pd.DataFrame:
    """Parse `a::b::c` lines; the first `int_columns` columns must be integers. Errors name the line."""
    rows, numbers = [], []
    for number, line in iter_lines(source, encoding):
        if not line.strip():
            continue
        parts = line.split(sep)
        if len(parts) != len(columns):
            raise DataError(f"{source}, line {number}: expected {len(columns)} fields "
                            f"({sep.join(columns)}), got {len(parts)}: {line[:80]!r}")
        rows.append(parts)
        numbers.append(number)
    if not rows:
        raise DataError(f"{source} is empty: expected lines of the form {sep.join(columns)}")
    frame = pd.DataFrame(rows, columns=list(columns))
    for name in columns[:int_columns]:
        values = pd.to_numeric(frame[name], errors="coerce")
        if values.isna().any():
            bad = int(np.flatnonzero(values.isna().to_numpy())[0])
            raise DataError(f"{source}, line {numbers[bad]}: field {name!r} must be an integer, "
                            f"got {frame[name].iloc[bad]!r}")
        frame[name] = values.astype(np.int64)
    frame["line"] = numbers
    return frame


def _check_range(frame: pd.DataFrame, column: str, low: int, high: int, source: Source) -> None:
    bad = ~frame[column].between(low, high)
    if bad.any():
        row = frame[bad].iloc[0]
        raise DataError(f"{source}, line {row.line}: {column} must be in {low}..{high}, got {row[column]}")


def _check_known(frame: pd.DataFrame, column: str, index: pd.Index, source: Source, catalogue: str) -> None:
    unknown = ~frame[column].isin(index)
    if unknown.any():
        row = frame[unknown].iloc[0]
        raise DataError(f"{source}, line {row.line}: {column} id {row[column]} is not in {catalogue}")


def _sorted_interactions(users, items, ratings, timestamps) -> pd.DataFrame:
    frame = pd.DataFrame({"user_id": np.asarray(users, dtype=np.int64), "item_id": np.asarray(items, dtype=np.int64),
                          "rating": np.asarray(ratings, dtype=np.float32),
                          "timestamp": np.asarray(timestamps, dtype=np.int64)})
    return frame.sort_values(["user_id", "timestamp"], kind="stable").reset_index(drop=True)


# -------------------------------------------------------------------------------------------- RecBole atomic
@dataclass
class AtomicDataset:
    """A RecBole atomic folder (AgentCF's subset): fixed splits, candidate lists and item text, all as tokens."""

    name: str
    items: pd.DataFrame  # item_id (token) plus text fields such as title, category
    splits: dict[str, pd.DataFrame]  # train/valid/test: user_id, item_id_list (list of tokens), item_id
    candidates: dict[str, list[str]]  # user token → candidate item tokens (the `.random` file)
    descriptions: dict[str, str]  # item token → LLM-written description (the `.pretrained_item` file)
    sources: dict[str, str] = field(default_factory=dict)  # file → SHA-256


def load_atomic(path: str | os.PathLike | None = None) -> AtomicDataset:
    """Load a RecBole atomic folder; default: AgentCF's `amazon-cds/agentcf` under the data roots."""
    folder = Path(path) if path is not None else _atomic_default()
    splits = {}
    for split in ("train", "valid", "test"):
        found = sorted(folder.glob(f"*.{split}.inter")) + sorted(folder.glob(f"*.{split}.inter.gz"))
        if not found:
            raise DataError(f"{folder}: no *.{split}.inter[.gz] file; expected a RecBole atomic folder")
        splits[split] = _read_atomic(Source(found[0]))
    name = found[0].name.split(".")[0]
    item_files = sorted(folder.glob("*.item")) + sorted(folder.glob("*.item.gz"))
    items = _read_atomic(Source(item_files[0])) if item_files else pd.DataFrame({"item_id": []})
    candidates = _read_token_lists(folder, ".random")
    described = sorted(folder.glob("*.pretrained_item*"))
    descriptions = {}
    if described:
        table = _read_atomic(Source(described[0]))
        descriptions = dict(zip(table["item_id"], table.iloc[:, 1]))
    sources = {file.name: file_sha256(file) for file in sorted(folder.iterdir()) if file.is_file()}
    return AtomicDataset(name, items, splits, candidates, descriptions, sources)


def _atomic_default() -> Path:
    roots = [Path(os.environ["STAREC_DATA_DIR"])] if os.environ.get("STAREC_DATA_DIR") else []
    for root in roots + [Path("data")]:
        if (root / "amazon-cds" / "agentcf").is_dir():
            return root / "amazon-cds" / "agentcf"
    raise DataError("AgentCF atomic folder not found: expected $STAREC_DATA_DIR/amazon-cds/agentcf/ "
                    "(files *.train.inter, *.valid.inter, *.test.inter, *.item, *.random)")


def _read_atomic(source: Source) -> pd.DataFrame:
    """Tab-separated, header `name:type`; `token_seq` fields named `*_list` become lists of tokens."""
    lines = iter_lines(source)
    header = next(lines, None)
    if header is None or not header[1].strip():
        raise DataError(f"{source} is empty: expected a header like 'user_id:token<TAB>item_id:token'")
    fields = [column.split(":")[0] for column in header[1].split("\t")]
    rows = []
    for number, line in lines:
        if not line:
            continue
        parts = line.split("\t")
        if len(parts) != len(fields):
            raise DataError(f"{source}, line {number}: expected {len(fields)} tab-separated fields "
                            f"({', '.join(fields)}), got {len(parts)}")
        rows.append(parts)
    frame = pd.DataFrame(rows, columns=fields)
    for column in fields:
        if column.endswith("_list"):
            frame[column] = frame[column].str.split()
    return frame


def _read_token_lists(folder: Path, suffix: str) -> dict[str, list[str]]:
    found = sorted(folder.glob(f"*{suffix}")) + sorted(folder.glob(f"*{suffix}.gz"))
    if not found:
        return {}
    lists = {}
    for number, line in iter_lines(Source(found[0])):
        if not line.strip():
            continue
        user, _, rest = line.partition("\t")
        if not rest:
            raise DataError(f"{found[0]}, line {number}: expected 'user<TAB>item item ...'")
        lists[user] = rest.split()
    return lists
