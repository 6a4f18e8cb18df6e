"""The leaderboard tab's content: a table, a plot of ratings with 95% intervals, a win-rate matrix.

The table's last three columns are the style-controlled fit (feedback_db/style.py): rating, interval
and rank with answer length and markdown held fixed; the summary gives the style coefficients, the
position effect, the prior, and the digest and seed that reproduce the numbers.
"""

from __future__ import annotations

import math
from html import escape

from feedback_db.leaderboard import Leaderboard, Row, preliminary_note
from feedback_db.style import Estimate

TABLE_HEADERS = [
    "rank",
    "contender",
    "rating",
    "95% interval",
    "battles",
    "wins",
    "losses",
    "ties",
    "style-controlled rating",
    "style-controlled 95% interval",
    "style-controlled rank",
]


def leaderboard_rows(board: Leaderboard) -> list[list[object]]:
    """One row per contender, best first; below the board's min_battles the intervals read "preliminary".

    Rank: by confidence (1 + the contenders whose interval lies wholly above), so ranks can be shared.
    """
    styled = {e.name: e for e in board.style.ratings} if board.style is not None else {}
    rows = []
    for row in board.rows:
        record = [row.battles, row.wins, row.losses, row.ties]
        plain = [row.rank, row.contender, round(row.rating, 1), _interval_cell(row, row.lower, row.upper)]
        found = styled.get(row.contender)
        if found is None:  # a board built from battles without their answers' style
            style: list[object] = ["–", "–", "–"]
        else:
            style = [
                round(found.value, 1),
                _interval_cell(row, found.lower, found.upper),
                board.style_ranks[row.contender],
            ]
        rows.append([*plain, *record, *style])
    return rows


def _interval_cell(row: Row, lower: float | None, upper: float | None) -> str:
    if row.preliminary:
        # A bootstrap over a few battles looks precise and is not (two votes: zero width).
        return f"preliminary ({row.battles} battle{'' if row.battles == 1 else 's'})"
    return "–" if lower is None or upper is None else f"{lower:.0f} – {upper:.0f}"


def win_rate_rows(board: Leaderboard) -> tuple[list[str], list[list[object]]]:
    """Headers and rows of the matrix: the row contender's share of its battles with the column's."""
    names = [row.contender for row in board.rows]
    rows = []
    for a in names:
        cells = [f"{board.win_rate[a][b]:.2f}" if b in board.win_rate.get(a, {}) else "–" for b in names]
        rows.append([a, *cells])
    return ["contender", *names], rows


def summary(board: Leaderboard) -> str:
    """The line above the table: what the board is built from, what was set aside, whether it is preliminary."""
    which = "blind (arena) ratings only" if board.blind_only else "all ratings, named and blind"
    # Ratings left out say so, or a board built from a tenth of the votes would pass for all of them.
    aside = f" {board.set_aside.line()}." if board.set_aside.ratings else ""
    if not board.rows:
        return f"No battles yet ({which}). Rate some comparisons first.{aside}"
    bias = (
        f" Position bias: answer A won {board.a_share:.0%} of the decisive A/B votes (50% is none)."
        if board.a_share is not None
        else ""
    )
    note = f"**{preliminary_note(board)}** " if board.preliminary else ""
    prior = f" with a weak prior of {board.prior_ties:g} virtual ties of each contender against an average one"
    prior = "" if board.preliminary else prior  # the preliminary note states it already
    return (
        f"{note}{board.battles_total} battles from {board.ratings_used} ratings ({which}); Bradley-Terry "
        f"ratings on the Elo scale (400, base 10, mean 1000){prior}, 95% intervals from {board.rounds} bootstrap "
        f"rounds; rank: 1 + the contenders whose interval lies wholly above.{aside}{bias}{_style_summary(board)}"
        f" Votes sha256 `{board.digest or '-'}`, bootstrap seed {board.seed}: the same votes and seed give "
        f"the same numbers."
    )


def _style_summary(board: Leaderboard) -> str:
    """The style-controlled fit in words: its coefficients and the position effect."""
    if board.style is None:
        return ""
    coefficients = ", ".join(f"{e.name} {e.value:+.0f}{_bounds(e, '.0f')}" for e in board.style.coefficients)
    first = board.style.first_shown
    return (
        " With style held fixed (the last three columns), style coefficients in rating points per standard "
        f"deviation of (a − b) / (a + b), a positive one favouring more of it: {coefficients}. Position "
        f"effect: the answer shown first beats an equal one {first.value:.1%}{_bounds(first, '.1%')} "
        "(50% is none)."
    )


def _bounds(estimate: Estimate, spec: str) -> str:
    if estimate.lower is None or estimate.upper is None:
        return ""
    return f" ({format(estimate.lower, spec)} to {format(estimate.upper, spec)})"


def plot_range(board: Leaderboard) -> tuple[float, float]:
    """The axis: every rating and every interval end, with a margin of 5% of the spread (at least 10).

    A percentile interval need not hold its own estimate (three votes: a rating of 1840 beside an
    interval ending at 1720), so the ratings count as well as the interval ends.
    """
    values = [v for r in board.rows for v in (r.rating, r.lower, r.upper) if v is not None]
    lo, hi = min(values), max(values)
    margin = max(10.0, 0.05 * (hi - lo))
    return lo - margin, hi + margin


def ratings_svg(board: Leaderboard, width: int = 720) -> str:
    """Each contender's rating as a dot with its interval as a bar; a plain SVG, no plotting library.

    Drawn in a `width`-wide viewBox and scaled to its container (width 100%, at most `width` px): the
    axis keeps its place among the data at any width, and a phone's narrow screen shrinks it instead of
    scrolling it.
    """
    if not board.rows:
        return ""
    row_h, right, top = 28, 30, 24
    # Room for the longest name at about 7 px a character, but at least half the plot for the data.
    left = min(width // 2, max(80, 7 * max(len(r.contender) for r in board.rows) + 16))
    lo, hi = plot_range(board)
    scale = (width - left - right) / (hi - lo)

    def x(value: float) -> float:
        return left + (value - lo) * scale

    height = top + row_h * len(board.rows) + 20
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="100%" '
        f'style="max-width: {width}px; height: auto; display: block" '
        f'role="img" aria-label="ratings with 95% intervals" font-family="sans-serif" font-size="12">'
    ]
    for tick in _ticks(lo, hi):
        parts.append(
            f'<line x1="{x(tick):.1f}" y1="{top - 6}" x2="{x(tick):.1f}" y2="{height - 20}" '
            f'stroke="#ddd"/><text x="{x(tick):.1f}" y="{top - 10}" text-anchor="middle" '
            f'fill="#666">{tick:.0f}</text>'
        )
    for i, row in enumerate(board.rows):
        y = top + row_h * i + row_h / 2
        low = row.rating if row.lower is None else row.lower
        high = row.rating if row.upper is None else row.upper
        # A preliminary rating is a hollow dot, so no one reads it as settled.
        dot = 'fill="white" stroke="#1f2937" stroke-width="2"' if row.preliminary else 'fill="#1f2937"'
        note = f", preliminary: {row.battles} battles" if row.preliminary else ""
        parts.append(
            f'<text x="{left - 8}" y="{y + 4:.1f}" text-anchor="end">{escape(_label(row.contender, left))}</text>'
            f'<line x1="{x(low):.1f}" y1="{y:.1f}" x2="{x(high):.1f}" y2="{y:.1f}" stroke="#f97316" '
            f'stroke-width="4" stroke-linecap="round"/><circle cx="{x(row.rating):.1f}" cy="{y:.1f}" '
            f'r="5" {dot}><title>{escape(row.contender)}: {row.rating:.0f} '
            f"({low:.0f}–{high:.0f}{note})</title></circle>"
        )
    parts.append("</svg>")
    return "".join(parts)


def _label(name: str, room: int) -> str:
    """The name, cut with an ellipsis where it would run past the left edge (about 7 px a character)."""
    fits = (room - 16) // 7
    return name if len(name) <= fits else name[: fits - 1] + "…"


def _ticks(lo: float, hi: float) -> list[float]:
    """At most about 8 round-numbered ticks, whatever the spread (a few early votes can spread far)."""
    raw = max((hi - lo) / 8, 1e-9)
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    first = math.floor(lo / step) * step + step
    return [first + i * step for i in range(int((hi - first) // step) + 1)]
