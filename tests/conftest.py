"""Shared fixtures: tiny real checkpoints, real SQLite databases, no network."""

from __future__ import annotations

import os

# Before anything imports huggingface_hub or gradio: tests never reach the network.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import uuid  # noqa: E402
from collections.abc import Iterator  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
from sqlalchemy import URL, create_engine, make_url  # noqa: E402
from sqlalchemy.pool import NullPool  # noqa: E402

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


# PostgreSQL: the tests marked `postgres` read the server from PLAYGROUND_TEST_POSTGRES_URL (a role that
# may CREATE DATABASE; .ci/run starts such a server) and give each test a database of its own, dropped
# afterwards. Without the variable, or without a server answering, they skip and say why; with
# PLAYGROUND_TEST_POSTGRES_REQUIRED=1 (set by .ci/run) they fail instead, so CI cannot skip them quietly.
POSTGRES_URL_ENV = "PLAYGROUND_TEST_POSTGRES_URL"
POSTGRES_REQUIRED_ENV = "PLAYGROUND_TEST_POSTGRES_REQUIRED"


def _unavailable(reason: str) -> None:
    if os.environ.get(POSTGRES_REQUIRED_ENV) == "1":
        pytest.fail(f"{reason} ({POSTGRES_REQUIRED_ENV}=1: the PostgreSQL tests must run here)")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def postgres_server() -> URL:
    """The test server's URL, once it has answered."""
    raw = os.environ.get(POSTGRES_URL_ENV, "").strip()
    if not raw:
        _unavailable(
            f"{POSTGRES_URL_ENV} is not set; set it to postgresql+psycopg://USER:PASSWORD@HOST:PORT/DB "
            "(a role that may create databases) to run the PostgreSQL tests, as .ci/run does"
        )
    url = make_url(raw)
    engine = create_engine(url, poolclass=NullPool, connect_args={"connect_timeout": 5})
    try:
        with engine.connect():
            pass
    except Exception as e:  # noqa: BLE001 - any failure means: no usable server here
        _unavailable(f"no PostgreSQL server answers at {url.render_as_string()}: {str(e).splitlines()[0]}")
    finally:
        engine.dispose()
    return url


@pytest.fixture
def postgres_url(postgres_server: URL) -> Iterator[str]:
    """The URL of a fresh, empty database on the test server, dropped after the test."""
    name = f"feedback_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(postgres_server, poolclass=NullPool, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
    try:
        yield postgres_server.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database on each backend: a SQLite file, and a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return sqlite_url(tmp_path / "feedback.sqlite3")
    return request.getfixturevalue("postgres_url")


@pytest.fixture
def any_db(db_url: str) -> Iterator[Database]:
    """An opened (migrated) database on each backend."""
    database = open_database(db_url)
    yield database
    database.dispose()


@pytest.fixture(scope="module")
def browser():
    """Debian's Chromium, headless, through Playwright."""
    from tests.browsers import CHROMIUM, FLAGS

    playwright_api = pytest.importorskip("playwright.sync_api")
    with playwright_api.sync_playwright() as p:
        # A persistent context would need its own profile folder; a plain launch gets a fresh one.
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield browser
        browser.close()


@pytest.fixture()
def stub():
    """An OpenAI-compatible stub server on loopback (tests/stub_openai.py)."""
    from tests.stub_openai import StubServer

    server = StubServer()
    yield server
    server.close()
