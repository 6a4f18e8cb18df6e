"""Where a Space keeps the database: its persistent storage when turned on, else a warning to the operator."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

from app import settings_from
from playground.server import LOST_AT_RESTART, create_app
from tests.fakes import words_streamer
from tests.servers import free_port

TOKEN = "s3cret-admin-token-0123456789"
SPACE = {"SYSTEM": "spaces", "SPACE_ID": "someone/playground", "PLAYGROUND_ADMIN_TOKEN": TOKEN}


def started(argv: list[str], env: dict[str, str], storage: Path) -> tuple[object, list[str]]:
    logs: list[str] = []
    settings = settings_from([*argv, "--port", str(free_port())], env, space_storage=storage)
    return create_app(settings, streamer=words_streamer(), log=logs.append), logs


def test_on_a_space_with_persistent_storage_the_database_goes_there(tmp_path):
    storage = tmp_path / "data"
    storage.mkdir()
    app, logs = started([], SPACE, storage)
    assert app.settings.data_dir == storage
    assert (storage / "feedback.sqlite3").is_file()
    assert LOST_AT_RESTART not in logs
    app.core.database.dispose()


def test_an_explicit_data_dir_or_database_url_wins_over_the_storage(tmp_path):
    storage = tmp_path / "data"
    storage.mkdir()
    chosen = settings_from(["--data-dir", str(tmp_path / "mine")], SPACE, space_storage=storage)
    assert chosen.data_dir == tmp_path / "mine"
    assert settings_from([], {**SPACE, "PLAYGROUND_DATA_DIR": "elsewhere"}, space_storage=storage).data_dir == Path(
        "elsewhere"
    )
    url = f"sqlite:///{tmp_path / 'other.sqlite3'}"
    app, logs = started(["--db-url", url], SPACE, tmp_path / "no-storage")
    assert (tmp_path / "other.sqlite3").is_file() and LOST_AT_RESTART not in logs
    app.core.database.dispose()
    assert settings_from([], {"SPACE_ID": "not/a-space"}, space_storage=storage).data_dir == Path("data")


def test_without_persistent_storage_the_log_and_only_the_admin_tab_say_ratings_are_lost(tmp_path):
    app, logs = started(["--data-dir", str(tmp_path / "container"), "--admin"], SPACE, tmp_path / "no-storage")
    assert logs.count(LOST_AT_RESTART) == 1
    with app:
        page = page_config(app.settings.port)
    holders = [c for c in page["components"] if "lost at each restart" in str(c["props"].get("value", ""))]
    assert [c["props"].get("elem_id") for c in holders] == ["admin-notice"]
    assert tabs_around(page, holders[0]["id"]) == ["Data (admin)"]

    visitors, logs = started(["--data-dir", str(tmp_path / "container")], SPACE, tmp_path / "no-storage")
    assert logs.count(LOST_AT_RESTART) == 1
    with visitors:
        assert "lost at each restart" not in json.dumps(page_config(visitors.settings.port))


def page_config(port: int) -> dict:
    """The page as the browser gets it: every component and the layout that nests them."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/config", timeout=30) as answer:
        return json.load(answer)


def tabs_around(page: dict, component_id: int) -> list[str]:
    """The labels of the tabs that hold a component, outermost first."""
    labels = {c["id"]: c["props"].get("label") for c in page["components"] if c["type"] == "tabitem"}

    def path(node: dict) -> list[int] | None:
        if node["id"] == component_id:
            return [node["id"]]
        for child in node.get("children", []):
            found = path(child)
            if found is not None:
                return [node["id"], *found]
        return None

    return [labels[i] for i in path(page["layout"]) or [] if i in labels]
