"""Arena mode: the app, not the person, picks which contenders answer, and hides their names."""

from __future__ import annotations

import itertools
import random
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from models.specs import ContenderSpec
from playground.errors import SettingsError


@dataclass(frozen=True)
class ArenaSampler:
    """Weighted sampling of `size` contenders; pairs in `avoid` are never drawn together.

    A group's chance is proportional to the product of its members' weights (missing: 1.0), as
    FastChat's arena weights models, restricted to groups with no avoided pair.
    """

    weights: Mapping[str, float] = field(default_factory=dict)
    avoid: frozenset[frozenset[str]] = frozenset()
    size: int = 2

    def __post_init__(self) -> None:
        if self.size < 2:
            raise SettingsError(f"an arena shows at least 2 answers, got size {self.size}")
        bad = {name: w for name, w in self.weights.items() if not w >= 0}
        if bad:
            raise SettingsError(f"arena weights must be 0 or more, got {bad}")

    def groups(self, contenders: Sequence[ContenderSpec]) -> list[tuple[tuple[ContenderSpec, ...], float]]:
        """Every allowed group with its weight."""
        unknown = (set(self.weights) | {n for pair in self.avoid for n in pair}) - {c.name for c in contenders}
        if unknown:
            raise SettingsError(
                f"arena settings name unknown contenders: {', '.join(sorted(unknown))}; "
                f"the lineup has: {', '.join(c.name for c in contenders)}"
            )
        allowed = []
        for group in itertools.combinations(contenders, self.size):
            names = [c.name for c in group]
            if any(frozenset(pair) in self.avoid for pair in itertools.combinations(names, 2)):
                continue
            weight = 1.0
            for name in names:
                weight *= self.weights.get(name, 1.0)
            if weight > 0:
                allowed.append((group, weight))
        if not allowed:
            raise SettingsError(
                f"no group of {self.size} contenders is allowed by the arena weights and "
                "avoided pairs: loosen --arena-avoid or --arena-weights"
            )
        return allowed

    def sample(self, contenders: Sequence[ContenderSpec], rng: random.Random) -> tuple[ContenderSpec, ...]:
        """Draw a group, then shuffle it so positions carry no information."""
        groups = self.groups(contenders)
        ((group, _),) = rng.choices(groups, weights=[w for _, w in groups], k=1)
        drawn = list(group)
        rng.shuffle(drawn)
        return tuple(drawn)

    def describe(self) -> dict[str, Any]:
        """How a group was drawn, as stored with each arena comparison."""
        return {"size": self.size, "weights": dict(self.weights), "avoid": sorted(sorted(pair) for pair in self.avoid)}


def parse_weights(text: str | None) -> dict[str, float]:
    """'name=2,other=0.5' -> {'name': 2.0, 'other': 0.5}."""
    weights: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in (text or "").split(","))):
        name, sep, value = part.rpartition("=")
        try:
            weights[name.strip()] = float(value)
        except ValueError:
            sep = ""
        if not sep or not name.strip():
            raise SettingsError(f"arena weight {part!r} should look like NAME=2.0")
    return weights


def parse_avoid(text: str | None) -> frozenset[frozenset[str]]:
    """'a:b,c:d' -> {{a, b}, {c, d}}: pairs never drawn together."""
    pairs = set()
    for part in filter(None, (p.strip() for p in (text or "").split(","))):
        left, sep, right = part.partition(":")
        if not sep or not left.strip() or not right.strip() or left.strip() == right.strip():
            raise SettingsError(f"arena pair {part!r} should look like NAME:OTHER")
        pairs.add(frozenset((left.strip(), right.strip())))
    return frozenset(pairs)
