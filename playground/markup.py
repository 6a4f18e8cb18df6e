"""Text from visitors and models as markdown that renders no HTML: every tag shows as the text it is.

Gradio renders chat messages and Markdown with marked, then sanitizes the HTML; its sanitizer keeps
`href="javascript:…"` on SVG links and inline `style` (issue 15), so markup written by a visitor or a
model could run script in every visitor's page or cover it. Raw HTML can only start with `<`, so every
`<` that marked would read as markup is written `&lt;`, which marked shows as `<`.

Code is left as written, since marked never reads markup there and `&lt;` would show literally:
fenced blocks, and inline code spans where the span is certain. Where this module and marked could
disagree about what is code (a fence in a container that may have ended, a span that a link, an
autolink, a table cell, strikethrough or math could cut), it escapes: a stray `&lt;` inside code is a
blemish, markup outside it is a hole.
"""

from __future__ import annotations

import re

# marked's fence: up to 3 spaces, 3+ backticks (no backtick after them on the line) or 3+ tildes.
_FENCE = re.compile(r"^( {0,3})(`{3,}(?=[^`]*$)|~{3,})")
_TAB_FENCE = re.compile(r"^[ \t]*\t[ \t]*(```|~~~)")  # tabs before a fence: parsers expand them differently
# A paragraph where a backtick may belong to a link, autolink, table cell, strikethrough or math.
_UNSURE_SPANS = re.compile(r"\]\(|\]:|://|www\.|@|\||\$|~")
_PUNCTUATION = set("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~")


def shown_as_text(text: str) -> str:
    """`text` as markdown in which no HTML tag, comment or autolink can start; code left as written."""
    lines = text.split("\n")
    out: list[str] = []
    paragraph: list[str] = []
    fence: tuple[str, int, int] | None = None  # (character, length, indent) of the open fence
    for number, line in enumerate(lines):
        bare = line.rstrip("\r")
        if fence is not None:
            char, length, indent = fence
            if re.match(rf"^ {{0,3}}{re.escape(char)}{{{length},}} *$", bare):
                fence = None
            elif re.match(rf"^ {{0,3}}{re.escape(char)}{{{length},}}[~`\t ]*$", bare) or (
                indent and bare.strip() and len(bare) - len(bare.lstrip(" ")) < indent
            ):
                # marked and CommonMark disagree on this closing line, or a list the fence sat in may have
                # ended here: from now on nothing is taken for code.
                out.append(_escape_all("\n".join(lines[number:])))
                return "\n".join(out)
            out.append(line)
            continue
        if _TAB_FENCE.match(bare):
            out.extend(_paragraph(paragraph))
            out.append(_escape_all("\n".join(lines[number:])))
            return "\n".join(out)
        opening = _FENCE.match(bare)
        if opening:
            out.extend(_paragraph(paragraph))
            paragraph = []
            marker = opening.group(2)
            fence = (marker[0], len(marker), len(opening.group(1)))
            out.append(_escape_all(line))  # the info string is not code
            continue
        if not bare.strip():
            out.extend(_paragraph(paragraph))
            paragraph = []
            out.append(line)
            continue
        paragraph.append(line)
    out.extend(_paragraph(paragraph))
    return "\n".join(out)


def _paragraph(lines: list[str]) -> list[str]:
    """A run of non-blank lines outside fences, with `<` escaped outside certain code spans."""
    if not lines:
        return []
    text = "\n".join(lines)
    spans = _code_spans(text)
    # Certain: each line's backticks pair up within the line (so however marked splits the lines into
    # blocks, the spans are these), and nothing else in the paragraph can take a backtick first.
    certain = not _UNSURE_SPANS.search(text) and all(_code_spans(line, whole=True) is not None for line in lines)
    return _escape_outside(text, spans if certain else []).split("\n")


def _code_spans(text: str, whole: bool = False) -> list[tuple[int, int]] | None:
    """The code spans of `text` as marked finds them: (start, end) of each span's content.

    A run of n backticks opens a span closed by the next run of exactly n; a run with no closer is
    text. Outside spans a backslash escapes the next punctuation character. With `whole`, None when a
    run is left unclosed (the line does not pair up by itself).
    """
    spans, i = [], 0
    while i < len(text):
        char = text[i]
        if char == "\\" and i + 1 < len(text) and text[i + 1] in _PUNCTUATION:
            i += 2
            continue
        if char != "`":
            i += 1
            continue
        run_end = i
        while run_end < len(text) and text[run_end] == "`":
            run_end += 1
        length = run_end - i
        closer = re.compile(rf"(?<!`)`{{{length}}}(?!`)").search(text, run_end)
        if closer is None:
            if whole:
                return None
            i = run_end
            continue
        spans.append((run_end, closer.start()))
        i = closer.end()
    return spans


def _escape_outside(text: str, spans: list[tuple[int, int]]) -> str:
    """Every `<` outside `spans` written `&lt;`, except one a backslash already escapes."""
    pieces, start = [], 0
    for span_start, span_end in spans:
        pieces.append(_escape_all(text[start:span_start]))
        pieces.append(text[span_start:span_end])
        start = span_end
    pieces.append(_escape_all(text[start:]))
    return "".join(pieces)


def _escape_all(text: str) -> str:
    """Every `<` written `&lt;`, except one a backslash escapes (`\\<` shows as `<` already)."""
    out, i = [], 0
    while i < len(text):
        char = text[i]
        if char == "\\" and i + 1 < len(text) and text[i + 1] in _PUNCTUATION:
            out.append(text[i : i + 2])
            i += 2
            continue
        out.append("&lt;" if char == "<" else char)
        i += 1
    return "".join(out)
