"""The admin tab's Activity section: how the app has been used, in four plots read at a glance.

The numbers come from the database (feedback_db.activity), so they survive restarts and count every
app process that shares it. Shown once the admin token is accepted (Enter in its box) or on the
button; a plot with nothing to show gives way to a sentence.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from datetime import date, datetime, time, timedelta, timezone
from typing import Any

import gradio as gr
import pandas as pd

from feedback_db import Database
from feedback_db.activity import DAYS, HOURS, Activity, activity_of

EVEN = "50%: no side preferred"
COLORS = {"counted": "#4f7ec9", "set aside": "#d48a3a", "chose A": "#4f7ec9", EVEN: "#9a9a9a"}
# Each contender's p50 dark and its p95 light, in one hue: the pair reads as one contender.
PAIRS = [("#1f5fbf", "#94b8ee"), ("#c4651a", "#f2b98a"), ("#2e8b57", "#9fd8b4"), ("#8e44ad", "#d3aee3")]


class ActivityPlots:
    """The section's components, in the order the handler fills them."""

    def __init__(self) -> None:
        gr.Markdown(
            "### Activity\nFrom the database: every app process sharing it, across restarts. Hours in your "
            "browser's time zone, days in UTC."
        )
        self.refresh = gr.Button("Show activity", elem_id="admin-activity")
        self.summary = gr.Markdown("", elem_id="activity-summary")
        plot = dict(visible=False, height=260, min_width=320)
        with gr.Row():
            with gr.Column():
                self.hourly = gr.LinePlot(
                    x="hour",
                    y="comparisons",
                    title=f"Comparisons per hour, last {HOURS} h",
                    x_title="hour (your time zone)",
                    x_label_angle=-30,
                    elem_id="activity-hourly",
                    **plot,
                )
                self.hourly_note = gr.Markdown("")
            with gr.Column():
                self.daily = gr.BarPlot(
                    x="day",
                    y="ratings",
                    color="ratings that",
                    title=f"Ratings per day, last {DAYS} days",
                    x_title="day",
                    color_map=COLORS,
                    elem_id="activity-ratings",
                    **plot,
                )
                self.daily_note = gr.Markdown("")
        with gr.Row():
            with gr.Column():
                self.latency = gr.ScatterPlot(
                    x="day",
                    y="seconds",
                    color="contender",
                    title="Time to first token by day: p50 and p95",
                    x_title="day",
                    y_title="seconds",
                    tooltip="all",
                    elem_id="activity-latency",
                    **plot,
                )
                self.latency_note = gr.Markdown("")
            with gr.Column():
                self.share = gr.ScatterPlot(
                    x="day",
                    y="share",
                    color="verdicts",
                    title="Verdicts for the answer shown on the left (A)",
                    x_title="day",
                    y_title="share of A or B verdicts",
                    y_lim=[0, 1.05],  # a day at 100% keeps its whole point
                    color_map=COLORS,
                    tooltip="all",
                    elem_id="activity-share",
                    **plot,
                )
                self.share_note = gr.Markdown("")

    @property
    def outputs(self) -> list[gr.components.Component]:
        return [
            self.summary,
            self.hourly,
            self.hourly_note,
            self.daily,
            self.daily_note,
            self.latency,
            self.latency_note,
            self.share,
            self.share_note,
        ]


def activity_section(database: Database, token: str, secret: gr.Textbox, check_token: Callable[..., Any]) -> None:
    """The Activity section under the admin token: filled when the token is entered, and on its button."""
    plots = ActivityPlots()

    def show(given: str) -> list[Any]:
        if not (isinstance(given, str) and hmac.compare_digest(given.encode(), token.encode())):
            raise gr.Error("wrong admin token", print_exception=False)  # the validator refused it already
        with database.snapshot() as session:
            return shown(activity_of(session))

    gr.on(
        [plots.refresh.click, secret.submit],
        show,
        inputs=[secret],
        outputs=plots.outputs,
        api_name="admin_activity",
        api_visibility="undocumented",
        validator=check_token,
        concurrency_limit=1,
        concurrency_id="admin",
        show_progress="minimal",
    )


def shown(seen: Activity) -> list[Any]:
    """What each output of the section shows: a plot's data, or a sentence where it has none."""
    hourly = [h.comparisons for h in seen.comparisons_per_hour]
    daily = [d.counted + d.set_aside for d in seen.ratings_per_day]
    comparisons, ratings = sum(hourly), sum(daily)
    aside = sum(d.set_aside for d in seen.ratings_per_day)
    summary = (
        f"**{comparisons}** comparison{'s' if comparisons != 1 else ''} in the last {HOURS} hours; "
        f"**{ratings}** rating{'s' if ratings != 1 else ''} in the last {DAYS} days"
        + (f", {aside} of them set aside" if aside else "")
        + f". Read at {seen.now:%Y-%m-%d %H:%M} UTC."
    )
    days = [seen.ratings_per_day[0].day, seen.ratings_per_day[-1].day + timedelta(days=1)]
    window = [datetime.combine(d, time(0), timezone.utc).timestamp() for d in days]  # the same days on each plot
    return [
        summary,
        *_plot(comparisons, hourly_frame(seen), f"No comparisons in the last {HOURS} hours.", y_lim=_counts(hourly)),
        *_plot(ratings, daily_frame(seen), f"No ratings in the last {DAYS} days.", x_lim=window, y_lim=_counts(daily)),
        *_plot(
            len(seen.first_token),
            latency_frame(seen),
            f"No answers with a first token in the last {DAYS} days.",
            color_map=latency_colors(seen),
            x_lim=window,
            y_lim=[0, 1.15 * max((r.p95_s for r in seen.first_token), default=1)],  # the highest point whole
        ),
        *_plot(len(seen.first_choice), share_frame(seen), f"No A or B verdicts in the last {DAYS} days.", x_lim=window),
    ]


def _counts(values: list[int]) -> list[float]:
    """An axis of counts from 0, at least to 5: whole numbers at every tick, never 0.2 of a rating."""
    return [0, max(5, *values)]


def _plot(count: int, frame: pd.DataFrame, empty: str, **shown: Any) -> list[Any]:
    if not count:
        return [gr.update(visible=False), empty]
    return [gr.update(value=frame, visible=True, **shown), ""]


def hourly_frame(seen: Activity) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "hour": pd.to_datetime([h.hour for h in seen.comparisons_per_hour], utc=True),
            "comparisons": [h.comparisons for h in seen.comparisons_per_hour],
        }
    )


def daily_frame(seen: Activity) -> pd.DataFrame:
    rows = [(_noon(d.day), d.counted, "counted") for d in seen.ratings_per_day]
    rows += [(_noon(d.day), d.set_aside, "set aside") for d in seen.ratings_per_day]
    return _frame(rows, ["day", "ratings", "ratings that"])


def latency_frame(seen: Activity) -> pd.DataFrame:
    rows = [(_noon(r.day), r.p50_s, f"{r.contender} p50", r.answers) for r in seen.first_token]
    rows += [(_noon(r.day), r.p95_s, f"{r.contender} p95", r.answers) for r in seen.first_token]
    return _frame(rows, ["day", "seconds", "contender", "answers"])


def latency_colors(seen: Activity) -> dict[str, str]:
    contenders = sorted({r.contender for r in seen.first_token})
    colors = {}
    for i, contender in enumerate(contenders):
        dark, light = PAIRS[i % len(PAIRS)]
        colors |= {f"{contender} p50": dark, f"{contender} p95": light}
    return colors


def share_frame(seen: Activity) -> pd.DataFrame:
    rows = [(_noon(d.day), d.share, "chose A", d.verdicts) for d in seen.first_choice]
    rows += [(_noon(d.day), 0.5, EVEN, d.verdicts) for d in seen.first_choice]
    return _frame(rows, ["day", "share", "verdicts", "A or B verdicts that day"])


def _frame(rows: list[tuple], columns: list[str]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=columns)
    frame["day"] = pd.to_datetime(frame["day"], utc=True)
    return frame


def _noon(day: date) -> datetime:
    """A day as its noon, UTC: the browser shows it on the same date in any zone within 12 hours of UTC."""
    return datetime.combine(day, time(12), timezone.utc)
