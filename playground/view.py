"""What the page shows for a session: plain data, so it is testable without a browser."""

from __future__ import annotations

from typing import Any, Mapping

from models.specs import LineupSpec, WeightsSpec
from playground.session import Pane, Session

STRENGTHS = {
    "Significantly better": "significantly_better",
    "Better": "better",
    "Slightly better": "slightly_better",
    "Negligibly better / unsure": "negligibly_better",
}
CHOICES = {"A is better": "a", "B is better": "b", "Tie": "tie", "Both are bad": "both_bad"}


def letter(position: int) -> str:
    return "ABCD"[position]


def pane_label(pane: Pane, session: Session) -> str:
    """Named mode shows who answers; arena mode hides it until the rating is in."""
    if session.blind:
        return f"Model {letter(pane.position)}"
    return f"{letter(pane.position)}: {pane.contender.name}"


def chat_messages(pane: Pane, session: Session) -> list[dict[str, str]]:
    """The pane's conversation as role/content dicts, the answer in progress last."""
    messages = list(pane.history)
    if session.last_prompt is None or pane.status == "idle":
        return messages
    messages.append({"role": "user", "content": session.last_prompt})
    answer = pane.text
    if pane.status == "error":
        answer = f"{answer}\n\n⚠️ This contender failed: {pane.error}".strip()
    elif pane.status == "stopped":
        answer = f"{answer} ⏹ (stopped)".strip()
    if answer or pane.status != "waiting":
        messages.append({"role": "assistant", "content": answer})
    return messages


def pane_stats(pane: Pane) -> str:
    """Timings under a pane once its answer is finished."""
    if pane.status in ("idle", "waiting"):
        return "" if pane.status == "idle" else "_waiting for the first token…_"
    if pane.status == "streaming":
        return "_streaming…_"
    if pane.status == "error":
        return "**error**"
    result = pane.result
    if result is None:
        return ""
    ttft = f"{result.time_to_first_token_s:.2f} s" if result.time_to_first_token_s is not None else "–"
    speed = f"{result.tokens_per_s:.1f} tok/s" if result.tokens_per_s else "– tok/s"
    reason = {"stop": "finished", "length": "hit max tokens", "stopped": "stopped by you"}.get(
        result.finish_reason, result.finish_reason)
    return f"first token {ttft} · {speed} · {result.completion_tokens} tokens · {reason}"


def rating_prompt(session: Session) -> str:
    """The line above the rating controls."""
    if len(session.panes) == 2:
        return "**Which answer is better, and by how much?** Judge helpfulness here; flag unsafe answers below."
    return "**Score each answer from 1 (bad) to 5 (excellent).** Flag unsafe answers below."


def models_markdown(lineup: LineupSpec, loaded: Mapping[WeightsSpec, Any], plan: Any | None) -> str:
    """The "Models" section: where each model lives, its precision, memory and status."""
    lines = ["| weights | contenders | devices | decoder layers per device | precision | memory | load |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    plans = dict(zip(lineup.weights, plan.models)) if plan is not None else {}
    for weights, item in loaded.items():
        contenders = ", ".join(c.name for c in lineup.contenders if c.weights == weights)
        model_plan = plans.get(weights)
        layers = " ".join(f"{d}:{n}" for d, n in model_plan.layers_per_device.items()) if model_plan else "–"
        precision = (model_plan.precision if model_plan else str(item.model.dtype).removeprefix("torch."))
        lines.append(f"| `{weights.describe()}` | {contenders} | {', '.join(item.devices)} | {layers} | "
                     f"{precision} | {item.memory_bytes() / 2**30:.2f} GiB | loaded in {item.load_seconds:.1f} s |")
    warnings = [f"- ⚠️ {w}" for w in (plan.warnings if plan is not None else ())]
    return "\n".join(lines + ([""] + warnings if warnings else []))
