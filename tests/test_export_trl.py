"""The exports as trainers read them: `datasets.load_dataset("json")` and TRL's data utilities."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from feedback_db import Database, ExportOptions, export_to, open_database, sqlite_url
from tests.databases import seed_golden

datasets = pytest.importorskip("datasets", reason="datasets is in requirements-dev.txt")
data_utils = pytest.importorskip("trl.data_utils", reason="trl is in requirements-dev.txt")


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Database]]:
    folder = tmp_path_factory.mktemp("exports")
    database = open_database(sqlite_url(folder / "feedback.sqlite3"))
    seed_golden(database)
    for export_format in ("dpo", "reward", "kto", "sft"):
        export_to(database, ExportOptions(export_format), folder / f"{export_format}.jsonl")
    yield folder, database
    database.dispose()


@pytest.fixture(scope="module")
def tokenizer():  # noqa: ANN201 - a transformers tokenizer
    from tests.checkpoints import tiny_tokenizer

    return tiny_tokenizer()


def load(folder: Path, name: str):  # noqa: ANN201 - a datasets.Dataset
    return datasets.load_dataset(
        "json", data_files=str(folder / f"{name}.jsonl"), split="train", cache_dir=str(folder / "hf-cache")
    )


def test_dpo_export_loads_as_a_conversational_preference_dataset(exported: tuple, tokenizer: object) -> None:
    folder, _ = exported
    dataset = load(folder, "dpo")
    assert dataset.num_rows == 7
    assert {"prompt", "chosen", "rejected", "comparison_id"} <= set(dataset.column_names)
    first = dataset[0]
    assert data_utils.is_conversational(first)
    assert first["chosen"] == [{"role": "assistant", "content": "answer of x"}]  # position 1 won, and it was x
    templated = data_utils.maybe_apply_chat_template(first, tokenizer)
    assert templated == {
        "prompt": "<s><|system|>Be brief.<|end|><|user|>Hi<|end|><|assistant|>Hello!<|end|>"
        "<|user|>Why is the sky blue?<|end|><|assistant|>",
        "chosen": "answer of x<|end|>",
        "rejected": "answer of y<|end|>",
    }
    mapped = dataset.map(data_utils.apply_chat_template, fn_kwargs={"processing_class": tokenizer})
    assert all(row["prompt"].endswith("<|assistant|>") and row["chosen"].endswith("<|end|>") for row in mapped)
    assert mapped["comparison_id"] == dataset["comparison_id"]  # the trace survives the mapping


def test_reward_export_keeps_the_margin_column(exported: tuple, tokenizer: object) -> None:
    folder, _ = exported
    dataset = load(folder, "reward")
    assert dataset.features["margin"].dtype == "float64"
    assert dataset["margin"][:2] == [1.0, pytest.approx(1 / 3)]
    assert data_utils.is_conversational(dataset[0])


def test_dpo_export_unpairs_into_kto_rows_and_kto_export_templates(exported: tuple, tokenizer: object) -> None:
    folder, _ = exported
    pairs = load(folder, "dpo").select_columns(["prompt", "chosen", "rejected"])
    unpaired = data_utils.unpair_preference_dataset(pairs)
    assert unpaired.num_rows == 14 and set(unpaired.column_names) == {"prompt", "completion", "label"}
    kto = load(folder, "kto")
    assert kto.features["label"].dtype == "bool" and kto.num_rows == 7  # the rating with a failed answer is set aside
    templated = data_utils.maybe_apply_chat_template(kto[1], tokenizer)
    assert (templated["completion"], templated["label"]) == ("answer of x<|end|>", True)


def test_sft_export_templates_as_whole_conversations(exported: tuple, tokenizer: object) -> None:
    folder, _ = exported
    dataset = load(folder, "sft")
    assert data_utils.is_conversational(dataset[0])
    text = data_utils.maybe_apply_chat_template(dataset[0], tokenizer)["text"]
    assert text.endswith("<|user|>Why is the sky blue?<|end|><|assistant|>answer of x<|end|>")
