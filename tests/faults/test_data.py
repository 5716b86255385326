"""Data that is wrong is refused with the file and line; downloads cut short are never pinned as the original."""

import gzip
import hashlib
import http.server
import json
import shutil
import threading
import zipfile

import pytest

from starec_env.data import clean_title
from starec_env.datasets import load_dataset
from starec_env.sources import DataError, Download, fetch


@pytest.fixture
def ml1m_copy(data_dir, tmp_path):
    """The real ML-1M files, unzipped, for one line to be broken."""
    folder = tmp_path / "ml-1m"
    folder.mkdir()
    for name in ("ratings.dat", "movies.dat", "users.dat"):
        with gzip.open(data_dir / "ml-1m" / f"{name}.gz", "rb") as source, open(folder / name, "wb") as target:
            shutil.copyfileobj(source, target)
    return folder


def replace_line(file, number, text):
    lines = file.read_text(encoding="latin-1").splitlines(keepends=True)
    lines[number - 1] = text + "\n"
    file.write_text("".join(lines), encoding="latin-1")


def test_a_fractional_ml1m_rating_is_refused_not_cut(ml1m_copy):
    replace_line(ml1m_copy / "ratings.dat", 7, "1::1197::3.9::978302268")
    with pytest.raises(DataError, match=r"ratings.dat, line 7: field 'rating' must be an integer, got '3.9'"):
        load_dataset("ml-1m", ml1m_copy)


def test_a_duplicate_movie_id_names_the_file_and_line(ml1m_copy):
    replace_line(ml1m_copy / "movies.dat", 5, "1::Toy Story again (1995)::Animation")
    with pytest.raises(DataError, match=r"movies.dat, line 5: item id 1 appears a second time"):
        load_dataset("ml-1m", ml1m_copy)


@pytest.mark.parametrize("overall", ["70", "NaN", "true", '"five"'])
def test_an_amazon_rating_outside_1_to_5_is_refused(tmp_path, overall):
    (tmp_path / "CDs_and_Vinyl_5.json").write_text(
        '{"reviewerID": "U1", "asin": "A1", "overall": 5.0, "unixReviewTime": 1}\n'
        f'{{"reviewerID": "U1", "asin": "A2", "overall": {overall}, "unixReviewTime": 2}}\n')
    (tmp_path / "meta_CDs_and_Vinyl.json").write_text('{"asin": "A1", "title": "x"}\n')
    with pytest.raises(DataError, match=r"line 2: expected .*a rating 1-5"):
        load_dataset("amazon-cds", tmp_path)


def test_checksum_lists_in_either_case_pass_and_garbage_in_them_is_an_error(ml1m_copy):
    sums = "".join(f"{hashlib.sha256((ml1m_copy / n).read_bytes()).hexdigest().upper()}  {n}\n"
                   for n in ("ratings.dat", "movies.dat", "users.dat"))
    (ml1m_copy / "SHA256SUMS").write_text(sums)
    assert len(load_dataset("ml-1m", ml1m_copy).interactions) == 487_650  # upper case, as sha256sum -c accepts
    (ml1m_copy / "SHA256SUMS").write_text(sums + "this is not a checksum line\n")
    with pytest.raises(DataError, match=r"SHA256SUMS, line 4: expected '<64 hex digits>  <file name>'"):
        load_dataset("ml-1m", ml1m_copy)


def test_a_half_downloaded_zip_is_called_truncated(ml1m_copy, tmp_path):
    archive = tmp_path / "dl" / "ml-1m.zip"
    archive.parent.mkdir()
    with zipfile.ZipFile(archive, "w") as bundle:
        for name in ("ratings.dat", "movies.dat", "users.dat"):
            bundle.write(ml1m_copy / name, f"ml-1m/{name}")
    archive.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    with pytest.raises(DataError, match="truncated or corrupt zip"):
        load_dataset("ml-1m", archive.parent)


@pytest.mark.parametrize("raw, clean", [("&lt;script&gt;alert(1)&lt;/script&gt; Greatest Hits", "alert(1) Greatest Hits"),
                                        ("Caf&eacute; &amp;lt;b&amp;gt;Tacvba", "Café Tacvba")])
def test_escaped_markup_cannot_become_markup(raw, clean):
    assert clean_title(raw) == (clean, "")


@pytest.mark.parametrize("damage", ["short", "gzip"])
def test_a_download_cut_short_is_not_pinned(tmp_path, damage):
    whole = gzip.compress(json.dumps({"asin": "A1"}).encode() * 200)

    class Server(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            body = whole[: len(whole) // 2]
            self.send_response(200)
            self.send_header("Content-Length", str(len(whole) if damage == "short" else len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Server)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/meta.json.gz"
    with pytest.raises(DataError):
        fetch(Download(url, "meta.json.gz", None), tmp_path / "meta.json.gz")
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # no file, no pinned hash
    server.shutdown()
