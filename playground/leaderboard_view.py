"""The leaderboard tab's content: a table, a plot of ratings with 95% intervals, a win-rate matrix."""

from __future__ import annotations

import math
from html import escape

from feedback_db.leaderboard import Leaderboard, preliminary_note

TABLE_HEADERS = ["rank", "contender", "rating", "95% interval", "battles", "wins", "losses", "ties"]


def leaderboard_rows(board: Leaderboard) -> list[list[object]]:
    """One row per contender, best first; below the board's min_battles the interval reads "preliminary"."""
    rows = []
    for rank, row in enumerate(board.rows, start=1):
        interval = f"{row.lower:.0f} – {row.upper:.0f}" if row.lower is not None else "–"
        if row.preliminary:
            # A bootstrap over a few battles looks precise and is not (two votes: zero width).
            interval = f"preliminary ({row.battles} battle{'' if row.battles == 1 else 's'})"
        rows.append([rank, row.contender, round(row.rating, 1), interval, row.battles, row.wins, row.losses, row.ties])
    return rows


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
    return (
        f"{note}{board.battles_total} battles from {board.ratings_used} ratings ({which}); Bradley-Terry "
        f"ratings on the Elo scale (400, base 10, mean 1000), 95% intervals from {board.rounds} bootstrap "
        f"rounds.{aside}{bias}"
    )


def ratings_svg(board: Leaderboard, width: int = 720) -> str:
    """Each contender's rating as a dot with its interval as a bar; a plain SVG, no plotting library."""
    if not board.rows:
        return ""
    row_h, left, right, top = 28, 220, 30, 24
    lows = [r.lower if r.lower is not None else r.rating for r in board.rows]
    highs = [r.upper if r.upper is not None else r.rating for r in board.rows]
    lo, hi = min(lows) - 10, max(highs) + 10
    scale = (width - left - right) / (hi - lo)

    def x(value: float) -> float:
        return left + (value - lo) * scale

    height = top + row_h * len(board.rows) + 20
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'role="img" aria-label="ratings with 95% intervals" font-family="sans-serif" font-size="12">'
    ]
    for tick in _ticks(lo, hi):
        parts.append(
            f'<line x1="{x(tick):.1f}" y1="{top - 6}" x2="{x(tick):.1f}" y2="{height - 20}" '
            f'stroke="#ddd"/><text x="{x(tick):.1f}" y="{top - 10}" text-anchor="middle" '
            f'fill="#666">{tick:.0f}</text>'
        )
    for i, (row, low, high) in enumerate(zip(board.rows, lows, highs)):
        y = top + row_h * i + row_h / 2
        # A preliminary rating is a hollow dot, so no one reads it as settled.
        dot = 'fill="white" stroke="#1f2937" stroke-width="2"' if row.preliminary else 'fill="#1f2937"'
        note = f", preliminary: {row.battles} battles" if row.preliminary else ""
        parts.append(
            f'<text x="{left - 8}" y="{y + 4:.1f}" text-anchor="end">{escape(row.contender)}</text>'
            f'<line x1="{x(low):.1f}" y1="{y:.1f}" x2="{x(high):.1f}" y2="{y:.1f}" stroke="#f97316" '
            f'stroke-width="4" stroke-linecap="round"/><circle cx="{x(row.rating):.1f}" cy="{y:.1f}" '
            f'r="5" {dot}><title>{escape(row.contender)}: {row.rating:.0f} '
            f"({low:.0f}–{high:.0f}{note})</title></circle>"
        )
    parts.append("</svg>")
    return "".join(parts)


def _ticks(lo: float, hi: float) -> list[float]:
    """At most about 8 round-numbered ticks, whatever the spread (a few early votes can spread far)."""
    raw = max((hi - lo) / 8, 1e-9)
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    first = math.floor(lo / step) * step + step
    return [first + i * step for i in range(int((hi - first) // step) + 1)]
