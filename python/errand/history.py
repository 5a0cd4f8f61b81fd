"""Message histories: drop the async results an agent delivered once they served.

`prune_history(history, delivered)` works on strings and on OpenAI, Anthropic
and Bedrock message dicts. A message that is only a delivered result is
dropped; a user's message that carried results (`AsyncAgent` puts results
that arrived meanwhile after the user's text) keeps the user's words.
`drop_superseded_digests` takes out the pending digests that led older turns.
"""

from __future__ import annotations

import copy
import functools
import typing
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Callable, TypeVar, Union

from errand.types import Completion

__all__ = [
    "DIGEST_STUB",
    "default_stub",
    "drop_superseded_digests",
    "prune_history",
    "stub_results",
]

M = TypeVar("M")

#: What `AsyncAgent.prune` leaves of a message that was a superseded pending
#: digest and nothing else (a message is never left empty).
DIGEST_STUB = "[superseded pending digest pruned]"


def _message_text(message: Any) -> str:
    """The text of a history entry: a string, or an OpenAI/Anthropic/Bedrock message."""
    if isinstance(message, str):
        return message
    content: Any = message.get("content") if isinstance(message, Mapping) else message
    if isinstance(content, str):
        return content
    if isinstance(content, Iterable):
        texts = []
        for block in content:
            if isinstance(block, str):
                texts.append(block)
            elif isinstance(block, Mapping) and isinstance(block.get("text"), str):
                texts.append(block["text"])
        return "\n".join(texts)
    return ""


def prune_history(
    history: Sequence[M],
    delivered: Iterable[Union[str, Completion]],
    *,
    keep_last: int = 0,
) -> list[M]:
    """Drop delivered async results from a message history.

    Args:
        history: messages as strings or dicts with "content" (a string or a
            list of blocks with "text", as OpenAI, Anthropic and Bedrock use).
        delivered: the delivered texts (`AsyncAgent.prune` passes its own) or
            completions (matched by their `text()`).
        keep_last: keep this many of the most recent result messages.

    Returns a new list; the tool calls and their acks are kept, so tool
    call/result pairs that model APIs require stay intact. A message with
    other text besides the results (a user's message that carried them)
    stays, as a copy without the results' text.
    """
    needles = [d.text() if isinstance(d, Completion) else d for d in delivered]
    needles = [n for n in needles if n]
    hits = [
        i
        for i, message in enumerate(history)
        if (text := _message_text(message)) and any(n in text for n in needles)
    ]
    prune = set(hits[: len(hits) - keep_last] if keep_last > 0 else hits)
    out: list[M] = []
    for i, message in enumerate(history):
        if i not in prune:
            out.append(message)
            continue
        rest = _without(message, needles)
        if _message_text(rest).strip():
            out.append(rest)
    return out


def default_stub(completion: Completion) -> str:
    """What replaces a pruned result: its task ID and tool, so the model can
    still tell which call it answered (and read it again with ReadResult)."""
    return f"[result of task {completion.task_id} ({completion.tool}) pruned]"


def stub_results(
    history: Sequence[M],
    completions: Iterable[Completion],
    stub: Callable[[Completion], str] = default_stub,
) -> list[M]:
    """A copy of `history` where each completion's text (`Completion.text()`,
    the server's message) is replaced by `stub(completion)`; other text and
    messages stay as they are."""
    pairs = [(c.text(), stub(c)) for c in completions]
    pairs = [(needle, new) for needle, new in pairs if needle]
    if not pairs:
        return list(history)
    out: list[M] = []
    for message in history:
        text = _message_text(message)
        if text and any(needle in text for needle, _ in pairs):
            out.append(_replace(message, lambda t: _swap(t, pairs)))
        else:
            out.append(message)
    return out


def drop_superseded_digests(
    history: Sequence[M], digests: Iterable[str], latest: str = ""
) -> list[M]:
    """A copy of `history` without the pending digests that no longer hold.

    A digest leads the message of the turn it was prepended to (`AsyncAgent`
    joins it to the rest with a blank line) and tells what was pending then;
    only the latest turn's still holds. Each of `digests` (the texts that led
    turns) is taken from the start of the user messages (and plain strings)
    it leads, but `latest` (the latest turn's digest, "" when that turn had
    none) stays at the start of the last message it leads. Other roles'
    messages (a tool's answer, the model's reply) are left alone, as is the
    rest of each message; a message that was a digest and nothing else
    becomes `DIGEST_STUB` rather than empty.
    """
    texts = {d for d in digests if d}
    if latest:
        texts.add(latest)
    if not texts:
        return list(history)
    drop = sorted(texts, key=len, reverse=True)  # a longer one first, should one lead another
    keep_at = -1
    if latest:
        led = [i for i, m in enumerate(history) if _users(m) and _leads(latest, m)]
        keep_at = led[-1] if led else -1
    but_latest = [d for d in drop if d != latest]
    out: list[M] = []
    for i, message in enumerate(history):
        these = but_latest if i == keep_at else drop
        if _users(message) and any(_leads(d, message) for d in these):
            out.append(_replace(message, functools.partial(_unlead, digests=these)))
        else:
            out.append(message)
    return out


def _users(message: Any) -> bool:
    """A plain string, or a message of the user's role (or of none)."""
    return isinstance(message, str) or (
        isinstance(message, Mapping) and message.get("role", "user") == "user"
    )


def _leads(digest: str, message: Any) -> bool:
    """`digest` leads the message's text (or one of its text blocks)."""
    return any(t == digest or t.startswith(digest + "\n\n") for t in _texts(message))


def _texts(message: Any) -> list[str]:
    """The texts `_replace` edits: the string, or its content's string or text blocks."""
    if isinstance(message, str):
        return [message]
    content = message.get("content") if isinstance(message, Mapping) else None
    if isinstance(content, str):
        return [content]
    if not isinstance(content, list):
        return []
    return [
        b if isinstance(b, str) else b["text"]
        for b in content
        if isinstance(b, str) or (isinstance(b, Mapping) and isinstance(b.get("text"), str))
    ]


def _unlead(text: str, digests: Sequence[str]) -> str:
    for digest in digests:
        if text == digest:
            return DIGEST_STUB
        if text.startswith(digest + "\n\n"):
            return text[len(digest) + 2 :]
    return text


def _swap(text: str, pairs: Sequence[tuple[str, str]]) -> str:
    for needle, new in pairs:
        text = text.replace(needle, new)
    return text


def _cut(text: str, needles: Sequence[str]) -> str:
    for needle in needles:
        text = text.replace(needle, "")
    return text.strip()


def _without(message: M, needles: Sequence[str]) -> M:
    """A copy of `message` with the needles' text taken out."""
    return _replace(message, lambda text: _cut(text, needles))


def _replace(message: M, edit: Callable[[str], str]) -> M:
    """A copy of `message` with `edit` applied to each of its texts."""
    if isinstance(message, str):
        return edit(message)  # type: ignore[return-value]
    if not isinstance(message, Mapping):
        return message
    content = message.get("content")
    rest: Any = copy.copy(message)
    if isinstance(content, str):
        rest["content"] = edit(content)
    elif isinstance(content, list):
        blocks: list[Any] = []
        for block in content:
            if isinstance(block, str):
                block = edit(block)
            elif isinstance(block, Mapping) and isinstance(block.get("text"), str):
                block = {**block, "text": edit(block["text"])}
            blocks.append(block)
        rest["content"] = blocks
    return typing.cast(M, rest)
