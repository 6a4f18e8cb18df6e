"""The two ways the playground says no: to a person on the page, and to the operator at start."""

from __future__ import annotations


class PlaygroundError(ValueError):
    """Something the person did that cannot be done now; the message says what to do instead."""


class SettingsError(ValueError):
    """A setting the operator gave cannot be served (arena groups, limits, pane count, admin token); the
    message says which and what to give instead."""
