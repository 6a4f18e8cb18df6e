"""The generation parameters a person may override: one source for the sliders and the server's checks."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping

from models.specs import GenerationParams
from playground.errors import PlaygroundError


@dataclass(frozen=True)
class ParamRange:
    """A slider's range and step, and the value it starts at."""

    minimum: float
    maximum: float
    step: float
    default: float

    @property
    def whole(self) -> bool:
        return float(self.step).is_integer()


PARAM_RANGES: dict[str, ParamRange] = {
    "temperature": ParamRange(0.0, 2.0, 0.05, 0.7),
    "top_p": ParamRange(0.05, 1.0, 0.05, 0.9),
    "top_k": ParamRange(0, 200, 1, 50),
    "repetition_penalty": ParamRange(1.0, 2.0, 0.05, 1.1),
    "max_new_tokens": ParamRange(16, 2048, 16, 256),
}
PARAM_FIELDS = tuple(PARAM_RANGES)


def checked_overrides(values: Mapping[str, Any]) -> dict[str, float | int]:
    """Overrides from untrusted input: known names, real finite numbers inside the sliders' ranges."""
    checked: dict[str, float | int] = {}
    for name, value in values.items():
        bounds = PARAM_RANGES.get(name)
        if bounds is None:
            raise PlaygroundError(f"unknown parameter {name!r}; known: {', '.join(PARAM_FIELDS)}")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise PlaygroundError(f"{name} must be a number, got {value!r:.40}")
        if not bounds.minimum <= value <= bounds.maximum:
            raise PlaygroundError(f"{name} must be between {bounds.minimum:g} and {bounds.maximum:g}, got {value:g}")
        if bounds.whole:
            if not float(value).is_integer():
                raise PlaygroundError(f"{name} must be a whole number, got {value!r}")
            value = int(value)  # sliders send 50.0 for 50
        checked[name] = value
    try:
        GenerationParams().with_overrides(**checked)
    except ValueError as error:
        raise PlaygroundError(str(error)) from None
    return checked
