"""Shared fixtures: tiny real checkpoints, real SQLite databases, no network."""

from __future__ import annotations

import os

# Before anything imports huggingface_hub or gradio: tests never reach the network.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

from feedback_db import Database, open_database, sqlite_url  # noqa: E402
from tests.checkpoints import tiny_llama  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SHARED_FIXTURES = REPO.parent / "shared" / "fixtures"


@pytest.fixture(scope="session")
def tiny_mha(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Multi-head attention, like Llama 2 7B and 13B."""
    return tiny_llama(tmp_path_factory.mktemp("tiny-mha"), kv_heads=4, seed=0)


@pytest.fixture(scope="session")
def tiny_gqa(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Grouped-query attention (2 key/value heads for 4 query heads), like Llama 2 70B."""
    return tiny_llama(tmp_path_factory.mktemp("tiny-gqa"), kv_heads=2, seed=1)


@pytest.fixture()
def database(tmp_path: Path) -> Database:
    db = open_database(sqlite_url(tmp_path / "feedback.sqlite3"))
    yield db
    db.dispose()


@pytest.fixture(scope="session")
def embedded_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The embedded model's safetensors cache: the user's cache when present, else a fresh one."""
    from models.embedded import converted_dir, default_cache_dir

    if (converted_dir(default_cache_dir(os.environ)) / "model.safetensors").is_file():
        return default_cache_dir(os.environ)
    return tmp_path_factory.mktemp("embedded-cache")


@pytest.fixture(scope="session")
def serve_tiny(tiny_mha: Path, tmp_path_factory: pytest.TempPathFactory):
    """`transformers serve` pinned to the multi-head tiny checkpoint, on loopback, for the whole run."""
    from tests.servers import transformers_serve

    server = transformers_serve(tiny_mha, tmp_path_factory.mktemp("serve") / "serve.log")
    yield server
    server.stop()
