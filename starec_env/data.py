"""Datasets in their original formats: MovieLens-1M, Amazon CDs and Vinyl (2014/2018), RecBole atomic folders, and
a plain interactions table (CSV or TSV) with an item-title table beside it.

Every loader returns the same `Dataset`: contiguous integer ids (original ids kept in `raw_id`), interactions sorted
by user then time (file order breaks ties), and a text catalogue that prompts and reports are rendered from.
"""

from __future__ import annotations

import ast
import csv
import html
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from starec_env.cache import file_sha256
from starec_env.sources import DataError, Download, Source, iter_lines, locate, verify_source

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


def ml1m_files(path: str | os.PathLike | None = None) -> dict[str, Source]:
    """Locate (and verify, or download) MovieLens-1M's original files: `ratings.dat`, `movies.dat`, `users.dat`."""
    return locate("ml-1m", (("ratings.dat",), ("movies.dat",), ("users.dat",)), path, downloads=(ML1M_DOWNLOAD,),
                  archive_prefix="ml-1m/")


def amazon_cds_files(path: str | os.PathLike | None = None) -> dict[str, Source]:
    """Locate Amazon CDs and Vinyl's review file (2018 or 2014 name) and its metadata."""
    return locate("amazon-cds", (("CDs_and_Vinyl_5.json", "reviews_CDs_and_Vinyl_5.json"),
                                 ("meta_CDs_and_Vinyl.json",)), path, downloads=AMAZON_CDS_DOWNLOADS)


def checksums(files: dict[str, Source]) -> dict[str, str]:
    """File → SHA-256, recorded beside every result."""
    return {source.member or source.path.name: file_sha256(source.path) for source in files.values()}


# ---------------------------------------------------------------------------------------------------------- ML-1M
def load_ml1m(files: dict[str, Source]) -> Dataset:
    ratings = _read_delimited(files["ratings.dat"], ("user", "item", "rating", "timestamp"), int_columns=4)
    _check_range(ratings, "rating", 1, 5, files["ratings.dat"])
    movies = _read_delimited(files["movies.dat"], ("item", "title", "genres"), int_columns=1, encoding="latin-1")
    users = _read_delimited(files["users.dat"], ("user", "gender", "age", "occupation", "zip"), int_columns=1)
    _check_unique(movies, "item", files["movies.dat"])
    _check_unique(users, "user", files["users.dat"])

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
    title = parsed["title"].fillna(movies["title"]).map(lambda raw: _front_article(clean_title(raw)[0]))
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
            rating, stamp = record["overall"], record["unixReviewTime"]
            if isinstance(rating, bool) or not 1 <= float(rating) <= 5 or isinstance(stamp, bool):
                raise ValueError(f"overall must be a rating from 1 to 5, got {rating!r}")
            rows.append((str(record["reviewerID"]), str(record["asin"]), float(rating), int(stamp)))
        except (KeyError, TypeError, ValueError) as error:
            raise DataError(f"{source}, line {number}: expected fields reviewerID, asin, overall (a rating 1-5) and "
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
    entities are unescaped and tags stripped until neither is left (so `&lt;b&gt;` cannot turn into a tag), and a
    title with nothing left is flagged rather than shown.
    """
    if not isinstance(raw, str) or not raw.strip():
        return "", "missing"
    text, before = raw, None
    while text != before:
        before, text = text, re.sub(r"<[^>]*>?", " ", html.unescape(text))
    text = re.sub(r"\s+", " ", text).strip()
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
    rows, numbers = _split_lines(source, iter_lines(source, encoding), columns, sep)
    if not rows:
        raise DataError(f"{source} is empty: expected lines of the form {sep.join(columns)}")
    frame = pd.DataFrame(rows, columns=list(columns))
    frame["line"] = numbers
    for name in columns[:int_columns]:
        frame[name] = _numbers(frame, name, int, source)
    return frame


def _split_lines(source: Source, lines, columns, sep: str, quoted: bool = False) -> tuple[list[list[str]], list[int]]:
    """The non-empty lines split on `sep` (`quoted`: CSV quoting rules), each into exactly one field per column;
    and their line numbers."""
    rows, numbers = [], []
    for number, line in lines:
        if not line.strip():
            continue
        parts = next(csv.reader([line], delimiter=sep)) if quoted else line.split(sep)
        if len(parts) != len(columns):
            raise DataError(f"{source}, line {number}: expected {len(columns)} fields "
                            f"({sep.join(columns)}), got {len(parts)}: {line[:80]!r}")
        rows.append(parts)
        numbers.append(number)
    return rows, numbers


def _check_unique(frame: pd.DataFrame, column: str, source: Source) -> None:
    repeated = frame[column].duplicated()
    if repeated.any():
        row = frame[repeated].iloc[0]
        raise DataError(f"{source}, line {row.line}: {column} id {row[column]} appears a second time; ids must be "
                        "unique")


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


# ------------------------------------------------------------------------------------------ your own data
TABLE_SUFFIXES = (".csv", ".tsv", ".csv.gz", ".tsv.gz")
TABLE_COLUMNS = ("user", "item", "rating", "timestamp")


def table_files(path: str | os.PathLike) -> dict[str, Source]:
    """An interactions table (`user,item,rating,timestamp` header; CSV or TSV, optionally gzipped) and the item
    table beside it (`items.csv` or `items.tsv`: `item,title` and optionally `attributes`)."""
    file = Path(path)
    if not file.is_file():
        raise DataError(f"{file}: no such interactions file (expected a table with columns {','.join(TABLE_COLUMNS)})")
    items = next((file.with_name(f"items{suffix}") for suffix in TABLE_SUFFIXES
                  if file.with_name(f"items{suffix}").is_file()), None)
    if items is None:
        raise DataError(f"{file}: no item table beside it; expected {file.with_name('items.csv')} (or .tsv) with "
                        "columns item,title[,attributes]")
    files = {"interactions": Source(file), "items": Source(items)}
    for source in files.values():
        verify_source(source)
    return files


def load_table(files: dict[str, Source]) -> Dataset:
    """A `Dataset` from `table_files`: every user and every item of the interactions, titles from the item table."""
    frame = _read_table(files["interactions"], TABLE_COLUMNS)
    for column, kind in (("rating", float), ("timestamp", int)):
        frame[column] = _numbers(frame, column, kind, files["interactions"])
    catalogue = _read_table(files["items"], ("item", "title"))
    return _dataset_from_table(Path(files["interactions"].path).name.split(".")[0], frame, catalogue, files)


def _read_table(source: Source, required: tuple[str, ...]) -> pd.DataFrame:
    """A delimited table with a header naming at least `required`; the delimiter is the header's tab or comma."""
    lines = iter_lines(source)
    header = next(lines, (0, ""))[1]
    sep = "\t" if "\t" in header else ","
    columns = [name.strip() for name in next(csv.reader([header], delimiter=sep), [])]
    missing = [name for name in required if name not in columns]
    if missing:
        raise DataError(f"{source}, line 1: expected a header naming {', '.join(required)}; got {header[:80]!r}")
    rows, numbers = _split_lines(source, lines, columns, sep, quoted=True)
    if not rows:
        raise DataError(f"{source} has a header and no rows")
    frame = pd.DataFrame(rows, columns=columns).apply(lambda column: column.str.strip())
    frame["line"] = numbers
    return frame


def _numbers(frame: pd.DataFrame, column: str, kind: type, source: Source) -> pd.Series:
    """A column as finite numbers (`kind` int: whole ones; "3.9" is no integer rating, not a 3), or a DataError
    naming the first line that is not."""
    values = pd.to_numeric(frame[column], errors="coerce")
    bad = values.isna() | ~np.isfinite(values)
    if kind is int:
        bad |= values != values.round()
    if bad.any():
        row = frame[bad].iloc[0]
        raise DataError(f"{source}, line {row.line}: field {column!r} must be "
                        f"{'an integer' if kind is int else 'a number'}, got {row[column]!r}")
    return values.astype(np.int64 if kind is int else np.float32)


def _dataset_from_table(name: str, frame: pd.DataFrame, catalogue: pd.DataFrame, files: dict[str, Source]) -> Dataset:
    known = catalogue.drop_duplicates("item").set_index("item")
    item_raw = pd.Index(pd.unique(frame["item"]))
    user_raw = pd.Index(pd.unique(frame["user"]))
    titles = [clean_title(known["title"].get(raw))[0] or f"item {raw}" for raw in item_raw]
    attributes = known["attributes"].reindex(item_raw).fillna("").tolist() if "attributes" in known else ""
    items = pd.DataFrame({"item_id": np.arange(len(item_raw)), "raw_id": item_raw, "title": titles,
                          "attributes": attributes, "title_flag": ""})
    users = pd.DataFrame({"user_id": np.arange(len(user_raw)), "raw_id": user_raw, "profile": ""})
    interactions = _sorted_interactions(user_raw.get_indexer(frame["user"]), item_raw.get_indexer(frame["item"]),
                                        frame["rating"], frame["timestamp"])
    untitled = int((~item_raw.isin(known.index)).sum())
    notes = [f"{len(frame):,} interactions from {len(user_raw):,} users on {len(item_raw):,} items"]
    if untitled:
        notes.append(f"{untitled} items have no title in the item table (shown as 'item <id>')")
    return Dataset(name, interactions, items, users, checksums(files), notes)


def atomic_files(folder: str | os.PathLike) -> dict[str, Source]:
    """A RecBole atomic folder in the general layout: one `NAME.inter` (user_id, item_id, rating, timestamp) and
    optionally `NAME.item` (item_id and a title field)."""
    folder = Path(folder)
    inter = sorted(f for f in folder.glob("*.inter*") if f.name.split(".")[1] == "inter")
    if len(inter) != 1:
        raise DataError(f"{folder}: expected one NAME.inter[.gz] file (RecBole atomic), found "
                        f"{[f.name for f in inter] or 'none'}")
    item = [f for f in folder.glob(f"{inter[0].name.split('.')[0]}.item*") if f.name.split(".")[1] == "item"]
    files = {"interactions": Source(inter[0]), **({"items": Source(item[0])} if item else {})}
    for source in files.values():
        verify_source(source)
    return files


def load_atomic_interactions(files: dict[str, Source]) -> Dataset:
    """A `Dataset` from `atomic_files`: RecBole's `user_id:token item_id:token rating:float timestamp:float`."""
    source = files["interactions"]
    frame = _read_atomic(source).rename(columns={"user_id": "user", "item_id": "item"})
    missing = [c for c in TABLE_COLUMNS if c not in frame]
    if missing:
        raise DataError(f"{source}, line 1: expected fields user_id, item_id, rating, timestamp; missing "
                        f"{', '.join(missing)}")
    frame["line"] = np.arange(2, len(frame) + 2)
    for column, kind in (("rating", float), ("timestamp", int)):
        frame[column] = _numbers(frame, column, kind, source)
    catalogue = pd.DataFrame({"item": [], "title": []})
    if "items" in files:
        table = _read_atomic(files["items"])
        title = next((c for c in ("title", "movie_title", "name") if c in table), None)
        catalogue = pd.DataFrame({"item": table["item_id"], "title": table[title] if title else table["item_id"]})
    return _dataset_from_table(Path(source.path).name.split(".")[0], frame, catalogue, files)


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


def atomic_split_files(folder: str | os.PathLike) -> dict[str, Source]:
    """A RecBole atomic folder in the sequential layout: `NAME.{train,valid,test}.inter` (user_id, item_id_list,
    item_id), and optionally `*.item` (item text), `NAME.random` (candidate lists) and `*.pretrained_item`."""
    folder = Path(folder)
    files = {}
    for split in ("train", "valid", "test"):
        found = sorted(folder.glob(f"*.{split}.inter")) + sorted(folder.glob(f"*.{split}.inter.gz"))
        if not found:
            raise DataError(f"{folder}: no *.{split}.inter[.gz] file; expected a RecBole atomic folder")
        files[split] = Source(found[0])
    for key, pattern in (("items", "*.item"), ("random", "*.random"), ("descriptions", "*.pretrained_item")):
        found = sorted(folder.glob(pattern)) + sorted(folder.glob(f"{pattern}.gz"))
        if found:
            files[key] = Source(found[0])
    for source in files.values():
        verify_source(source)
    return files


def load_atomic(files: dict[str, Source]) -> AtomicDataset:
    """Parse `atomic_split_files`: splits, item text, candidate lists and descriptions, all as tokens."""
    splits = {split: _read_atomic(files[split]) for split in ("train", "valid", "test")}
    items = _read_atomic(files["items"]) if "items" in files else pd.DataFrame({"item_id": []})
    candidates = _read_token_lists(files["random"]) if "random" in files else {}
    descriptions = {}
    if "descriptions" in files:
        table = _read_atomic(files["descriptions"])
        descriptions = dict(zip(table["item_id"], table.iloc[:, 1]))
    name = files["test"].path.name.split(".")[0]
    return AtomicDataset(name, items, splits, candidates, descriptions, checksums(files))


def atomic_default() -> Path:
    """AgentCF's subset under the data roots: `$STAREC_DATA_DIR/amazon-cds/agentcf` or `./data/amazon-cds/agentcf`."""
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


def _read_token_lists(source: Source) -> dict[str, list[str]]:
    lists = {}
    for number, line in iter_lines(source):
        if not line.strip():
            continue
        user, _, rest = line.partition("\t")
        if not rest:
            raise DataError(f"{source}, line {number}: expected 'user<TAB>item item ...'")
        lists[user] = rest.split()
    return lists
