"""The README's front matter, which a Hugging Face Space reads as its configuration, agrees with the code."""

from __future__ import annotations

import inspect
import re
import sys
from importlib.metadata import distribution, version
from pathlib import Path

from huggingface_hub.repocard import metadata_load

from app import build_parser, settings_from
from models.embedded import EMBEDDED_ID, HUB_ID
from models.lineups import get_lineup, lineup_names
from playground.server import Settings
from tests.conftest import REPO

CARD = metadata_load(REPO / "README.md") or {}
REQUIREMENTS = (REPO / "requirements.txt").read_text(encoding="utf-8")


def pin(package: str) -> str:
    match = re.search(rf"^{re.escape(package)}==(\S+)", REQUIREMENTS, re.M)
    assert match, f"requirements.txt does not pin {package}"
    return match.group(1)


def test_the_card_is_at_the_very_top_of_the_readme():
    assert (REPO / "README.md").read_text(encoding="utf-8").startswith("---\n")
    assert CARD["sdk"] == "gradio" and CARD["app_file"] == "app.py" and (REPO / CARD["app_file"]).is_file()
    assert CARD["title"] and CARD["emoji"] and CARD["short_description"] and CARD["pinned"] is False


def test_the_sdk_is_the_gradio_the_requirements_pin():
    assert str(CARD["sdk_version"]) == pin("gradio") == version("gradio")


def test_python_is_the_one_the_pins_are_installed_for():
    # The torch pin is installed from a CPython 3.11 wheel (cp311) where this app is tested, and every pin
    # was tested on that Python; without the key a Space runs its own default Python, which they never saw.
    assert CARD["python_version"] == "3.11" == f"{sys.version_info.major}.{sys.version_info.minor}"
    assert version("torch").split("+")[0] == pin("torch")
    tags = re.findall(r"^Tag: (\S+)", distribution("torch").read_text("WHEEL") or "", re.M)
    assert tags and all(t.startswith("cp311-") for t in tags), tags


def test_sign_in_is_turned_on_for_raters_hub():
    assert CARD["hf_oauth"] is True  # without it a Space sets no OAUTH_CLIENT_ID and --raters hub refuses to start
    raters = next(a for a in build_parser({})._actions if "--raters" in a.option_strings)
    assert "hub" in raters.choices


def test_suggested_storage_is_where_the_database_goes_on_a_space():
    assert CARD["suggested_hardware"] == "cpu-basic"  # the demo lineup answers on two CPU cores
    assert CARD["suggested_storage"] in ("small", "medium", "large")
    default = inspect.signature(settings_from).parameters["space_storage"].default
    assert default == Settings().space_storage == Path("/data")  # where a Space mounts persistent storage


def test_every_model_listed_is_one_a_lineup_uses():
    used = {HUB_ID if w.id == EMBEDDED_ID else w.id for name in lineup_names() for w in get_lineup(name).weights}
    assert CARD["models"] and set(CARD["models"]) <= used, set(CARD["models"]) - used
    assert HUB_ID in CARD["models"]  # the default lineup's, as the Hub serves it on a Space
