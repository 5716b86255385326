import gzip
import hashlib
import zipfile

import pytest

from starec_env.data import clean_title
from starec_env.datasets import load_dataset
from starec_env.sources import DataError


def _head(src, dest, lines, corrupt_line=None):
    """A tiny slice of a real file (optionally with one line replaced) for edge-case tests."""
    with gzip.open(src, "rt", encoding="latin-1") as handle:
        rows = [next(handle) for _ in range(lines)]
    if corrupt_line is not None:
        rows[corrupt_line - 1] = "this line is not a rating\n"
    dest.write_text("".join(rows), encoding="latin-1")
    return dest


@pytest.fixture
def ml1m_slice(data_dir, tmp_path):
    folder = tmp_path / "ml-1m"
    folder.mkdir()
    for name in ("movies.dat", "users.dat"):
        _head(data_dir / "ml-1m" / f"{name}.gz", folder / name, 3883 if name == "movies.dat" else 6040)
    _head(data_dir / "ml-1m" / "ratings.dat.gz", folder / "ratings.dat", 500)
    return folder


def test_ml1m_real_counts_and_text(data_dir):
    data = load_dataset("ml-1m")
    assert len(data.interactions) == 487_650
    assert data.interactions["user_id"].nunique() == 2_999
    assert len(data.items) == 3_883 and data.n_users == 6_040
    assert any("subset" in note for note in data.notes)
    matrix = data.items[data.items["raw_id"] == 2571].iloc[0]
    assert (matrix.title, int(matrix.year)) == ("The Matrix", 1999)
    assert "Sci-Fi" in matrix.genres
    assert data.users.iloc[0].profile == "gender: female; age: under 18; occupation: K-12 student"
    first_user = data.interactions[data.interactions["user_id"] == 0]
    assert first_user["timestamp"].is_monotonic_increasing


def test_amazon_cds_real_counts_and_title_cleaning(data_dir):
    data = load_dataset("amazon-cds")
    assert len(data.interactions) == 25_694 and len(data.items) == 5_590
    assert (data.items["title_flag"] == "html_debris").sum() == 29
    assert not data.items["title"].str.contains("<span|&[a-z]+;", regex=True).any()
    assert "Bluenote Café" in set(data.items["title"])
    assert data.item_text(int(data.items.index[data.items["title_flag"] == "html_debris"][0])).startswith("Unknown CD")


@pytest.mark.parametrize("raw, expected", [
    ("Folie &agrave; Deux", ("Folie à Deux", "")),
    ('<span class="a-size-medium a-color-secondary a-text-normal', ("", "html_debris")),
    ("<b>Kind of Blue</b>", ("Kind of Blue", "")),
    ("", ("", "missing")),
    (None, ("", "missing")),
])
def test_clean_title(raw, expected):
    assert clean_title(raw) == expected


def test_ml1m_from_official_zip_layout(ml1m_slice, tmp_path):
    archive = tmp_path / "ml-1m.zip"
    with zipfile.ZipFile(archive, "w") as out:
        for file in ml1m_slice.iterdir():
            out.write(file, f"ml-1m/{file.name}")
    data = load_dataset("ml-1m", archive)
    assert len(data.interactions) == 500


def test_malformed_line_names_file_and_line(data_dir, tmp_path):
    folder = tmp_path / "ml-1m"
    folder.mkdir()
    for name, lines in (("movies.dat", 3883), ("users.dat", 6040)):
        _head(data_dir / "ml-1m" / f"{name}.gz", folder / name, lines)
    _head(data_dir / "ml-1m" / "ratings.dat.gz", folder / "ratings.dat", 50, corrupt_line=17)
    with pytest.raises(DataError, match=r"ratings\.dat, line 17: expected 4 fields"):
        load_dataset("ml-1m", folder)


def test_non_integer_field_names_line(ml1m_slice):
    lines = (ml1m_slice / "ratings.dat").read_text().splitlines()
    lines[9] = "1::abc::5::978300760"
    (ml1m_slice / "ratings.dat").write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"line 10: field 'item' must be an integer"):
        load_dataset("ml-1m", ml1m_slice)


def test_empty_file_is_an_error(ml1m_slice):
    (ml1m_slice / "ratings.dat").write_text("")
    with pytest.raises(DataError, match="ratings.dat is empty"):
        load_dataset("ml-1m", ml1m_slice)


def test_truncated_gzip_is_an_error(ml1m_slice):
    blob = gzip.compress((ml1m_slice / "ratings.dat").read_bytes())
    (ml1m_slice / "ratings.dat").unlink()
    (ml1m_slice / "ratings.dat.gz").write_bytes(blob[: len(blob) // 2])
    with pytest.raises(DataError, match="truncated or corrupt"):
        load_dataset("ml-1m", ml1m_slice)


def test_checksum_mismatch_is_an_error(ml1m_slice):
    good = hashlib.sha256((ml1m_slice / "movies.dat").read_bytes()).hexdigest()
    (ml1m_slice / "SHA256SUMS").write_text(f"{good}  movies.dat\n{'0' * 64}  ratings.dat\n")
    with pytest.raises(DataError, match="ratings.dat: SHA-256 mismatch"):
        load_dataset("ml-1m", ml1m_slice)


def test_missing_files_error_says_where_to_put_them(tmp_path):
    with pytest.raises(DataError, match=r"ratings\.dat\[\.gz\].*\n.*Looked in"):
        load_dataset("ml-1m", tmp_path)


def test_amazon_2014_python_literal_metadata(data_dir, tmp_path):
    reviews = tmp_path / "reviews_CDs_and_Vinyl_5.json"
    reviews.write_text('{"reviewerID": "U1", "asin": "A1", "overall": 5.0, "unixReviewTime": 1}\n'
                       '{"reviewerID": "U1", "asin": "A2", "overall": 2.0, "unixReviewTime": 2}\n')
    (tmp_path / "meta_CDs_and_Vinyl.json").write_text(
        "{'asin': 'A1', 'title': \"Rock 'n' Roll\", 'categories': [['CDs & Vinyl']]}\n"
        "{'asin': 'A2', 'title': '__import__(\"os\")'}\n")
    data = load_dataset("amazon-cds", tmp_path)
    assert list(data.items["title"]) == ["Rock 'n' Roll", '__import__("os")']  # a literal, never evaluated


def test_amazon_review_missing_field_names_line(tmp_path):
    (tmp_path / "CDs_and_Vinyl_5.json").write_text('{"reviewerID": "U1", "asin": "A1", "overall": 5.0}\n')
    (tmp_path / "meta_CDs_and_Vinyl.json").write_text('{"asin": "A1", "title": "x"}\n')
    with pytest.raises(DataError, match=r"line 1: expected fields .*unixReviewTime"):
        load_dataset("amazon-cds", tmp_path)


def test_agentcf_atomic_folder(data_dir):
    atomic = load_dataset("agentcf-cds")
    assert atomic.name == "CDs-100-user-dense"
    assert {k: len(v) for k, v in atomic.splits.items()} == {"train": 500, "valid": 100, "test": 100}
    test = atomic.splits["test"].iloc[0]
    assert len(test.item_id_list) == 7 and test.item_id not in test.item_id_list
    assert len(atomic.candidates) == 100 and all(len(c) >= 9 for c in atomic.candidates.values())
    assert len(atomic.items) == 64_031 and "title" in atomic.items
    assert len(atomic.descriptions) > 0
