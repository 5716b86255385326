import dataclasses

import pytest

from starec_env.agents.prompts import PromptConfig
from starec_env.benchmarks.cli import build_parser, main
from starec_env.benchmarks.flags import config_from_flags
from starec_env.benchmarks.replay import BenchConfig
from starec_env.trainers.distill import DistillConfig
from starec_env.trainers.grpo import GRPORunConfig
from starec_env.trainers.pipeline import PipelineConfig
from starec_env.trainers.sft import SFTRunConfig


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


def parsed(*argv):
    """The namespace `starec` parses, without running the command."""
    return build_parser().parse_args(list(argv))


def test_train_flags_come_from_the_config_dataclasses():
    config = config_from_flags(PipelineConfig, parsed("train", "--popular", "10", "--grpo-steps", "48",
                                                      "--distill-teacher", "sasrec", "--no-evidence", "--sft-lora"))
    assert (config.prompt.popular, config.prompt.evidence, config.prompt.think) == (10, False, True)
    assert (config.grpo.steps, config.distill.teacher, config.sft.lora) == (48, "sasrec", True)
    assert config.grpo.learning_rate == GRPORunConfig().learning_rate  # flags left out keep the defaults
    assert config_from_flags(PipelineConfig, parsed("train")) == PipelineConfig()


def test_bench_flags_keep_their_names_and_parse_lists_and_options():
    config = config_from_flags(BenchConfig, parsed("bench", "--policies", "pop,sasrec", "--train", "full",
                                                   "--seeds", "0,1", "--users", "5", "--option", "epochs=3",
                                                   "--option", "objective=bce", "--model", "hf:x"))
    assert (config.policies, config.views, config.seeds, config.n_users) == (("pop", "sasrec"), ("full",), (0, 1), 5)
    assert config.options() == {"epochs": 3, "objective": "bce", "model": "hf:x"}


def test_every_config_field_has_a_documented_flag(capsys):
    for command, configs in (("bench", [BenchConfig]),
                             ("train", [PipelineConfig, PromptConfig, DistillConfig, SFTRunConfig, GRPORunConfig])):
        with pytest.raises(SystemExit):
            main([command, "--help"])
        text = "".join(capsys.readouterr().out.split())  # argparse wraps lines, at hyphens too
        for config in configs:
            for field in dataclasses.fields(config):
                if "help" in field.metadata or field.name not in ("prompt", "distill", "sft", "grpo"):
                    assert "".join(field.metadata["help"].split()) in text, (command, field.name)
