"""Lineups: the named weights and presets, the built-in lineups (demo.toml, llama2.toml in this folder),
lineup files a person writes, and ad-hoc lineups from `--model` references."""

from models.lineups.files import LineupFileError, load_lineup_file
from models.lineups.registry import (
    BUILTIN_LINEUPS,
    PRESETS,
    WEIGHTS,
    UnknownLineup,
    adhoc_lineup,
    get_lineup,
    lineup_from_file,
    lineup_names,
    register_lineup,
    weights_from_reference,
)

__all__ = [
    "BUILTIN_LINEUPS",
    "PRESETS",
    "WEIGHTS",
    "LineupFileError",
    "UnknownLineup",
    "adhoc_lineup",
    "get_lineup",
    "lineup_from_file",
    "lineup_names",
    "load_lineup_file",
    "register_lineup",
    "weights_from_reference",
]
