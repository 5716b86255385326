from starec_env.benchmarks.cli import main


def test_data_info_prints_real_counts(ml1m, capsys):
    assert main(["data", "info", "ml-1m"]) == 0
    out = capsys.readouterr().out
    assert "274545" in out and "93594" in out and "subset of ML-1M" in out


def test_data_protocol_writes_candidate_file(ml1m, tmp_path):
    assert main(["data", "protocol", "ml-1m", "--out", str(tmp_path)]) == 0
    lines = (tmp_path / "candidates_ml-1m_seed0.tsv").read_text().splitlines()
    assert len([line for line in lines if line.startswith("test\t")]) == 1_000


def test_missing_data_is_a_clear_error_not_a_traceback(tmp_path, capsys):
    assert main(["data", "info", "ml-1m", "--path", str(tmp_path)]) == 2
    assert "dataset files not found" in capsys.readouterr().err
