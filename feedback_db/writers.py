"""Writing export rows to JSONL or Parquet without holding them all: line by line, row group by row group.

A file is written under a temporary name and renamed when complete, so a failed or interrupted export
never leaves a half-written file where a trainer would pick it up.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from itertools import islice
from pathlib import Path
from typing import Any, TextIO

import pyarrow as pa
import pyarrow.parquet as pq

from .database import Database
from .export import ExportOptions, ExportSummary, Tally, iter_rows

PARQUET_ROW_GROUP = 10_000
ARROW_BATCH = 1_000
SUFFIXES = (".jsonl", ".parquet")

_MESSAGES = pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))
_TRACE = [
    ("comparison_id", pa.string()),
    ("rating_id", pa.string()),
    ("lineup", pa.string()),
    ("blind", pa.bool_()),
    ("kind", pa.string()),
    ("rater", pa.string()),
]
_PAIR = [
    ("strength", pa.string()),
    ("chosen_contender", pa.string()),
    ("rejected_contender", pa.string()),
    ("chosen_position", pa.int64()),
    ("rejected_position", pa.int64()),
]
_ANSWER = [("contender", pa.string()), ("position", pa.int64())]
# Fixed schemas, so every row group agrees even when a column is null throughout one of them.
SCHEMAS: dict[str, pa.Schema] = {
    "dpo": pa.schema([("prompt", _MESSAGES), ("chosen", _MESSAGES), ("rejected", _MESSAGES), *_TRACE, *_PAIR]),
    "reward": pa.schema(
        [
            ("prompt", _MESSAGES),
            ("chosen", _MESSAGES),
            ("rejected", _MESSAGES),
            ("margin", pa.float64()),
            *_TRACE,
            *_PAIR,
        ]
    ),
    "kto": pa.schema(
        [
            ("prompt", _MESSAGES),
            ("completion", _MESSAGES),
            ("label", pa.bool_()),
            *_TRACE,
            ("label_source", pa.string()),
            *_ANSWER,
        ]
    ),
    "sft": pa.schema([("messages", _MESSAGES), *_TRACE, *_ANSWER]),
}


def export_to(database: Database, options: ExportOptions, destination: Path | TextIO) -> ExportSummary:
    """Export to a .jsonl or .parquet path, or as JSONL to an open text stream; return what was done."""
    tally = Tally()
    with database.snapshot() as session:
        rows = iter_rows(session, options, tally)
        if not isinstance(destination, Path):
            write_jsonl(rows, destination)
        elif destination.suffix == ".parquet":
            write_parquet(rows, destination, schema_of(options))
        elif destination.suffix == ".jsonl":
            with _replaced_on_success(destination) as partial, partial.open("w", encoding="utf-8") as out:
                write_jsonl(rows, out)
        else:
            raise ValueError(f"cannot tell the file type of {destination}: name it *.jsonl or *.parquet")
    return tally.summary(options.format, options)


def schema_of(options: ExportOptions) -> pa.Schema:
    """The format's schema plus the columns these options add (visitor, set_aside, raters and minority)."""
    schema = SCHEMAS[options.format]
    if options.include_visitor:
        schema = schema.append(pa.field("visitor", pa.string()))
    if options.keeps_set_aside:
        schema = schema.append(pa.field("set_aside", pa.list_(pa.string())))
    if options.aggregate is not None:
        schema = schema.append(pa.field("raters", pa.int64())).append(pa.field("minority", pa.int64()))
    return schema


def write_jsonl(rows: Iterable[dict[str, Any]], out: TextIO) -> int:
    """One JSON object per line (UTF-8 kept as is); returns the number of lines."""
    count = 0
    for row in rows:
        out.write(json.dumps(row, ensure_ascii=False) + "\n")
        count += 1
    return count


def write_parquet(
    rows: Iterable[dict[str, Any]], path: Path, schema: pa.Schema, row_group: int = PARQUET_ROW_GROUP
) -> int:
    """Rows in row groups of `row_group`; returns the number of rows.

    Rows turn into Arrow record batches of ARROW_BATCH as they come, so at most ARROW_BATCH rows are
    Python dicts at once, and one row group is held, in Arrow's compact form, until it is written.
    """
    count, pending = 0, []
    with _replaced_on_success(path) as partial, pq.ParquetWriter(partial, schema) as writer:
        for batch in _batches(rows, ARROW_BATCH):
            pending.append(pa.RecordBatch.from_pylist(batch, schema=schema))
            count += len(batch)
            if sum(b.num_rows for b in pending) >= row_group:
                writer.write_table(pa.Table.from_batches(pending, schema=schema))
                pending = []
        if pending:
            writer.write_table(pa.Table.from_batches(pending, schema=schema))
    return count


def _batches(rows: Iterable[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    iterator = iter(rows)
    while batch := list(islice(iterator, size)):
        yield batch


@contextmanager
def _replaced_on_success(path: Path) -> Iterator[Path]:
    """A temporary path beside `path`, renamed to it if the block succeeds and removed if not."""
    partial = path.with_name(f".{path.name}.partial")
    try:
        yield partial
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    os.replace(partial, path)
