"""The page's other tabs: the leaderboard for everyone, the data export for the data owners only."""

from __future__ import annotations

import atexit
import hmac
import shutil
import tempfile
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import gradio as gr

from feedback_db import Database
from feedback_db.agreement import agreement_of
from feedback_db.agreement import markdown as agreement_markdown
from feedback_db.export import FORMATS, ExportOptions
from feedback_db.leaderboard import DEFAULT_MIN_BATTLES, leaderboard_of
from feedback_db.reading import RatingFilter
from feedback_db.records import STRENGTHS, parse_moment
from feedback_db.writers import export_to
from playground.downloads import OneTimeDownloads
from playground.leaderboard_view import TABLE_HEADERS, leaderboard_rows, ratings_svg, summary, win_rate_rows
from playground.ui_activity import activity_section
from playground.visitors import FailedAttempts

STRENGTH_CHOICES = ["any", *reversed(STRENGTHS)]  # weakest first, as a minimum is chosen
# An export's download link is a secret URL that works without the token: it lives this long.
EXPORT_TTL_S = 600
# Wrong admin tokens one visitor may send a minute; then every export request from them is refused at
# once, the right token too, so guessing gets nowhere and costs the server nothing.
WRONG_TOKENS_PER_MINUTE = 5


def refusal(message: str) -> gr.Error:
    """A refusal for the page: no traceback in the server's log (it is not a fault), and its text shown
    as text (Gradio renders an error's message as HTML, and messages may quote what was sent)."""
    return gr.Error(message.replace("<", "&lt;"), print_exception=False)


def prune_exports(folder: Path, max_age_s: float = EXPORT_TTL_S) -> int:
    """Delete the export files in `folder` older than `max_age_s`; return how many went."""
    cutoff, removed = time.time() - max_age_s, 0
    for path in folder.glob("feedback-*"):
        try:
            if path.stat().st_mtime < cutoff:
                path.unlink()
                removed += 1
        except FileNotFoundError:  # two exports pruning at once
            pass
    return removed


def leaderboard_tab(database: Database, rounds: int, min_battles: int = DEFAULT_MIN_BATTLES) -> None:
    """Bradley-Terry ratings with intervals, computed when the tab is opened or refreshed.

    Until every contender has `min_battles` battles, the board says it is preliminary.
    """
    with gr.Tab("Leaderboard") as tab:
        with gr.Row():
            include_named = gr.Checkbox(label="Include named (not blind) ratings", value=False)
            refresh = gr.Button("Refresh", size="sm", elem_id="leaderboard-refresh")
        heading = gr.Markdown("", elem_id="leaderboard-summary")
        plot = gr.HTML("", elem_id="leaderboard-plot")
        table = gr.Dataframe(headers=TABLE_HEADERS, interactive=False, elem_id="leaderboard-table")
        gr.Markdown("**Win rate** of the row's contender against the column's (ties count half).")
        matrix = gr.Dataframe(interactive=False, elem_id="win-rate")

    def show(all_ratings: bool) -> list[Any]:
        with database.snapshot() as session:  # a read: never hold the write lock through the bootstrap
            board = leaderboard_of(session, blind_only=not all_ratings, rounds=rounds, min_battles=min_battles)
        headers, rows = win_rate_rows(board)
        return [
            summary(board),
            ratings_svg(board),
            gr.Dataframe(value=leaderboard_rows(board), headers=TABLE_HEADERS),
            gr.Dataframe(value=rows, headers=headers),
        ]

    outputs = [heading, plot, table, matrix]
    # Its own limit, apart from generation's: the board answers however many answers are streaming.
    board = dict(inputs=[include_named], outputs=outputs, concurrency_limit=2, concurrency_id="leaderboard")
    refresh.click(show, api_name="leaderboard", api_visibility="undocumented", **board)
    for trigger in (tab.select, include_named.change):
        trigger(show, api_name=False, **board)


def admin_tab(
    database: Database,
    token: str,
    lineup: str,
    downloads: OneTimeDownloads,
    visitor: Callable[[gr.Request | None], str],
    notice: str = "",
) -> None:
    """Exports for trainers; every request must carry the admin token, checked where it joins the queue.

    `visitor` tells who asks (the same key as the visitor limits), for counting wrong tokens; `notice`,
    when given, heads the tab (what only the operator needs to know).
    """
    with gr.Tab("Data (admin)"):
        if notice:
            gr.Markdown(notice, elem_id="admin-notice")
        gr.Markdown(
            "Exports of the stored feedback for reward-model, DPO, KTO and SFT training. "
            "Needs the admin token the app was started with (`PLAYGROUND_ADMIN_TOKEN`)."
        )
        secret = gr.Textbox(label="Admin token", type="password", elem_id="admin-token")
        with gr.Row():
            export_format = gr.Radio(list(FORMATS), value="dpo", label="Format")
            suffix = gr.Radio([".jsonl", ".parquet"], value=".jsonl", label="File type")
        with gr.Row():
            since = gr.Textbox(label="Since (ISO date or time, optional)", placeholder="2026-11-01")
            until = gr.Textbox(label="Until (optional)", placeholder="2026-12-01")
            contenders = gr.Textbox(label="Only these contenders (comma separated, optional)")
        with gr.Row():
            min_strength = gr.Dropdown(STRENGTH_CHOICES, value="any", label="Minimum strength")
            blind_only = gr.Checkbox(label="Blind ratings only")
            only_lineup = gr.Checkbox(label=f"Only lineup {lineup!r}")
            exclude_unsafe = gr.Checkbox(label="Leave out answers flagged unsafe")
            include_errors = gr.Checkbox(label="Include failed answers", value=False)
        with gr.Row():
            include_set_aside = gr.Checkbox(label="Include ratings set aside (too fast, identity leak, gold, …)")
            majority = gr.Checkbox(label="One row per comparison its raters' majority agrees on")
        run = gr.Button("Export", variant="primary", elem_id="admin-export")
        result = gr.Markdown("", elem_id="admin-summary")
        download = gr.Markdown("", elem_id="admin-file")
        on = AdminExports(database, token, lineup, downloads, visitor)
        _agreement_section(secret, lineup, on)
        activity_section(database, token, secret, on.check_token)
    # The token is checked before the queue (validator), so guesses never take a place or a worker.
    what = [secret, export_format, suffix, since, until, contenders, min_strength]  # the order export() takes
    which = [blind_only, only_lineup, exclude_unsafe, include_errors, include_set_aside, majority]
    run.click(
        on.export,
        inputs=what + which,
        outputs=[result, download],
        api_name="admin_export",
        api_visibility="undocumented",
        validator=on.check_token,
        concurrency_limit=1,
        concurrency_id="admin",
    )


def _agreement_section(secret: gr.Textbox, lineup: str, on: AdminExports) -> None:
    """Krippendorff's alpha and each rater's habits, behind the same token as the exports."""
    gr.Markdown(
        "### Agreement between raters\nKrippendorff's alpha over comparisons rated twice or more, "
        "and each rater's habits (by pseudonym)."
    )
    with gr.Row():
        agree_lineup = gr.Checkbox(label=f"Only lineup {lineup!r}")
        agree_set_aside = gr.Checkbox(label="Include ratings set aside")
    agree = gr.Button("Show agreement", elem_id="admin-agreement")
    agreement = gr.Markdown("", elem_id="admin-agreement-report")
    agree.click(
        on.agreement,
        inputs=[secret, agree_lineup, agree_set_aside],
        outputs=[agreement],
        api_name="admin_agreement",
        api_visibility="undocumented",
        validator=on.check_token,
        concurrency_limit=1,
        concurrency_id="admin",
    )


class AdminExports:
    """The data tab's handlers: the token check where a request joins the queue, and the export."""

    def __init__(
        self,
        database: Database,
        token: str,
        lineup: str,
        downloads: OneTimeDownloads,
        visitor: Callable[[gr.Request | None], str],
    ) -> None:
        self.database, self.token, self.lineup, self.downloads, self.visitor = (
            database,
            token,
            lineup,
            downloads,
            visitor,
        )
        # The app's own folder, not the shared temp folder's top: removed at exit, pruned at each export.
        self.folder = Path(tempfile.mkdtemp(prefix="playground-exports-"))
        atexit.register(shutil.rmtree, self.folder, ignore_errors=True)
        self.exporting = threading.Lock()  # one export at a time; a token check never waits for it
        self.wrong = FailedAttempts(limit=WRONG_TOKENS_PER_MINUTE, window_s=60.0)

    def check_token(self, request: gr.Request, given: Any, *rest: Any) -> list[Any]:
        """Before the queue: a wrong token is refused at once and counted, and never takes a worker."""
        who = self.visitor(request)
        if self.wrong.blocked(who):
            refused = (
                f"more than {WRONG_TOKENS_PER_MINUTE} wrong admin tokens came from your address in the "
                "last minute: wait a minute, then give the token the app was started with"
            )
        elif not _same(given, self.token):
            self.wrong.failed(who)
            refused = "wrong admin token"
        else:
            return [gr.validate(True, "")] * (len(rest) + 1)
        return [gr.validate(False, refused), *([gr.validate(True, "")] * len(rest))]

    def agreement(self, given: str, this_lineup: bool, include_set_aside: bool) -> str:
        """The agreement report of the stored ratings, as markdown."""
        if not _same(given, self.token):  # the validator refused it already; a request cannot skip it
            raise refusal("wrong admin token")
        with self.database.snapshot() as session:
            only = self.lineup if this_lineup is True else None
            report = agreement_of(session, lineup=only, include_set_aside=include_set_aside is True)
        return agreement_markdown(report)

    def export(
        self,
        given: str,
        fmt: str,
        ext: str,
        start: str,
        end: str,
        names: str,
        strength: str,
        blind: bool,
        this_lineup: bool,
        unsafe: bool,
        errors: bool,
        set_aside: bool = False,
        majority: bool = False,
    ) -> list[Any]:
        if not _same(given, self.token):  # the validator refused it already; a request cannot skip it
            raise refusal("wrong admin token")
        try:
            options = ExportOptions(
                format=fmt,
                where=RatingFilter(
                    since=_moment(start),
                    until=_moment(end),
                    lineup=self.lineup if this_lineup else None,
                    blind_only=blind,
                ),
                contenders=frozenset(n.strip() for n in (names or "").split(",") if n.strip()),
                min_strength=None if strength == "any" else strength,
                exclude_unsafe=unsafe,
                include_errors=errors,
                include_set_aside=set_aside is True,
                aggregate="majority" if majority is True else None,
            )
        except ValueError as error:
            raise refusal(str(error)) from None
        with self.exporting:
            prune_exports(self.folder)
            stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
            path = self.folder / f"feedback-{fmt}-{stamp}{ext}"
            done = export_to(self.database, options, path)
        link = self.downloads.offer(path)  # not a file output: Gradio would serve that to anyone with its URL
        return [
            done.line(),
            f"[Download {path.name}]({link}) — the link works once, within {EXPORT_TTL_S // 60} minutes.",
        ]


def _same(given: Any, token: str) -> bool:
    return isinstance(given, str) and hmac.compare_digest(given.encode(), token.encode())


def _moment(text: str) -> datetime | None:
    if not (text or "").strip():
        return None
    try:
        return parse_moment(text)
    except ValueError as error:
        raise refusal(str(error)) from None
