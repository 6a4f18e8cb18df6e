"""The compare tab's API as gradio_client sees it: where an output sits in a result, and a rating's inputs."""

from __future__ import annotations


def token_of(result, panes: int = 2) -> str:
    """The form token in an /ask, /regenerate or /rate result: after chatbots, stats, parameters, hint, heading."""
    return result[3 * panes + 2]


def rate_args(
    token: str, choice: str, strength: str | None = None, unsafe=(False, False), reasons=("", ""), comment: str = ""
) -> list:
    return [token, choice, strength, *unsafe, *reasons, comment]


def answers(result) -> list[str]:
    """The assistant texts of the two chatbots in an /ask result."""
    texts = []
    for chatbot in result[:2]:
        content = chatbot["value"][-1]["content"]
        texts.append(content if isinstance(content, str) else content[0]["text"])
    return texts
