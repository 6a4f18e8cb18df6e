"""What the page shows for a session: plain data, so it is testable without a browser."""

from __future__ import annotations

from typing import Any, Mapping

from models.specs import GenerationParams, LineupSpec, WeightsSpec
from playground.admission import Place
from playground.conversation import Conversation, Pane, letter
from playground.markup import shown_as_text


def pane_label(pane: Pane, conversation: Conversation) -> str:
    """Named mode shows who answers; arena mode hides it until the rating is in."""
    if conversation.blind:
        return f"Model {letter(pane.position)}"
    return f"{letter(pane.position)}: {pane.contender.name}"


def chat_messages(pane: Pane, conversation: Conversation) -> list[dict[str, str]]:
    """The pane's conversation as role/content dicts, the answer in progress last; markup in prompts
    and answers shows as text (playground.markup)."""
    messages = [{"role": m["role"], "content": shown_as_text(m["content"])} for m in pane.history]
    if conversation.last_prompt is None or pane.status == "idle":
        return messages
    messages.append({"role": "user", "content": shown_as_text(conversation.last_prompt)})
    answer = pane.text
    if pane.status == "error":
        answer = f"{answer}\n\n⚠️ This contender failed: {pane.error}".strip()
    elif pane.status == "stopped":
        answer = f"{answer} ⏹ (stopped)".strip()
    if answer or pane.status != "waiting":
        messages.append({"role": "assistant", "content": shown_as_text(answer)})
    return messages


def pane_stats(pane: Pane, conversation: Conversation | None = None) -> str:
    """Timings under a pane: waiting, streaming, or first token, speed, tokens and why it ended; while the
    next question waits for a free place, where it stands (seen without scrolling on a phone)."""
    if conversation is not None and conversation.queue_place is not None:
        return f"_Your question waits for a free place: {_place_words(conversation.queue_place)}_"
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
        result.finish_reason, result.finish_reason
    )
    line = f"first token {ttft} · {speed} · {result.completion_tokens} tokens · {reason}"
    return f"{line} · ⚠️ {pane.notice}" if pane.notice else line


def rating_prompt(conversation: Conversation) -> str:
    """The line above the rating controls."""
    if conversation.pairwise:
        return "**Which answer is better, and by how much?** Judge helpfulness here; flag unsafe answers below."
    return (
        "**Score each answer from 1 (bad) to 5 (excellent), or rank them** (1 is best, equal ranks "
        "are ties). Flag unsafe answers below."
    )


def vote_hint(conversation: Conversation) -> str:
    """Under the answers: why the vote is not open yet, and how to open it now."""
    if conversation.queue_place is not None:
        return waiting_line(conversation.queue_place)
    panes = conversation.panes
    if conversation.comparison_id is None or conversation.rated or conversation.all_finished:
        return ""
    waiting = [letter(p.position) for p in panes if not p.finished]
    done = len(panes) - len(waiting)
    names = " and ".join(waiting)
    if not done:
        return "_The vote opens when every answer has finished._"
    return (
        f"_The vote opens when every answer has finished: still streaming {names}. "
        f"Press Stop under {names} to vote now; a stopped answer is rated as it stands._"
    )


def _place_words(place: Place) -> str:
    where = "next in line" if place.position == 1 else f"number {place.position} in line"
    wait = (
        "estimating the wait…"
        if place.estimate_s is None
        else "starting any moment"
        if place.estimate_s < 1
        else f"about {place.estimate_s:.0f} s to wait"
        if place.estimate_s < 90
        else f"about {place.estimate_s / 60:.0f} min to wait"
    )
    return f"{where}, {wait}"


def waiting_line(place: Place) -> str:
    """A question waiting for a free place: where it stands and about how long it waits."""
    words = _place_words(place)
    return (
        f"_Your question waits for a free place: {words}{'' if words.endswith('…') else '.'} Answers start "
        "once every answer already streaming can spare the speed to stay readable._"
    )


def describe_params(params: GenerationParams) -> str:
    """Sampling settings in a line: what the answer under it was (or will be) sampled with."""
    sampling = (
        "greedy"
        if params.greedy
        else f"temperature {params.temperature:g} · top_p {params.top_p:g} · "
        f"top_k {params.top_k if params.top_k else 'off'}"
    )
    return f"{sampling} · repetition penalty {params.repetition_penalty:g} · max {params.max_new_tokens} tokens"


def pane_params(pane: Pane, conversation: Conversation) -> str:
    """The parameters of the answer in the pane, or of its next answer; overrides are said as such."""
    upcoming = conversation.params_for(pane)
    if pane.params is None:
        who = "your override" if conversation.overrides else "preset"
        return f"{who}: {describe_params(upcoming)}"
    line = describe_params(pane.params)
    if upcoming != pane.params:
        line += f" — next answer: {'your override' if conversation.overrides else 'preset'}"
    return line


def models_markdown(
    lineup: LineupSpec,
    loaded: Mapping[WeightsSpec, Any],
    plan: Any | None,
    engines: Mapping[WeightsSpec, str] | None = None,
) -> str:
    """The "Models" section: what served each model (the embedded one: its package or the Hub at a commit),
    where it lives, its precision, memory, engine and status."""
    engines = engines or {}
    lines = [
        "| weights | contenders | devices | decoder layers per device | precision | memory | engine | load |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    plans = dict(zip(lineup.weights, plan.models)) if plan is not None else {}
    for weights, item in loaded.items():
        contenders = ", ".join(c.name for c in lineup.contenders if c.weights == weights)
        model_plan = plans.get(weights)
        layers = " ".join(f"{d}:{n}" for d, n in model_plan.layers_per_device.items()) if model_plan else "–"
        precision = model_plan.precision if model_plan else str(item.model.dtype).removeprefix("torch.")
        lines.append(
            f"| `{item.describe()}` | {contenders} | {', '.join(item.devices)} | {layers} | "
            f"{precision} | {item.memory_bytes() / 2**30:.2f} GiB | {engines.get(weights, '–')} | "
            f"loaded in {item.load_seconds:.1f} s |"
        )
    warnings = [f"- ⚠️ {w}" for w in (plan.warnings if plan is not None else ())]
    return "\n".join(lines + ([""] + warnings if warnings else []))


def servers_markdown(
    lineup: LineupSpec, unavailable: Mapping[str, str], contexts: Mapping[str, int | None] | None = None
) -> str:
    """The remote contenders: server, model, who renders the prompt, context, request limit, and status.

    `contexts` holds each contender's context length, where its lineup or its server gives one.
    """
    contexts = contexts or {}
    lines = [
        "| contender | server | model | prompt | context | open requests | at start |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for contender in lineup.contenders:
        endpoint = contender.endpoint
        if endpoint is None:
            continue
        prompt = "this app (Llama 2), /v1/completions" if endpoint.prompt == "local" else "server's chat template"
        context = contexts.get(contender.name)
        fitted = (
            "old exchanges left out to fit"
            if context and endpoint.tokenizer
            else "not counted here (no tokenizer)"
            if context
            else "unknown"
        )
        context_text = f"{context} tokens, {fitted}" if context else fitted
        status = f"⚠️ unavailable: {unavailable[contender.name]}" if contender.name in unavailable else "ready"
        lines.append(
            f"| {contender.name} | `{endpoint.url}` | `{endpoint.model}` | {prompt} | {context_text} | "
            f"{endpoint.max_concurrent or 'no limit'} | {status} |"
        )
    return "\n".join(lines)
