"""The digest the model reads, and the one rule behind it (not public).

The server's `PendingDigest` counts every completion not acknowledged yet;
an agent acknowledges after a turn, so that count takes in results its
model is shown in the message it handles, or was shown already. `unshown`
is the one rule for the results the model has not been shown (`Seen`:
what an agent knows it has shown), and `digest_text` words the digest by
it: the digest that leads each of `AsyncAgent`'s turns (`errand._turns`)
and the answer of the framework adapters' `errand_pending` session tool
(`session_digest`, with what the agent that drives the session in this
process has shown its model: `drives`, `stops`, `driver`).
"""

from __future__ import annotations

import re
import threading
import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING, Optional

from errand.types import PendingDigest

if TYPE_CHECKING:
    from errand._turns import TurnLoop


@dataclass(frozen=True)
class Seen:
    """What an `AsyncAgent` knows of what its model has been shown (`TurnLoop._seen`).

    `max_seen`: the highest seq it received; `held`: the seqs it received
    and the model has not been shown (queued, or SILENT), the message in the
    model's hands aside; `silent`: those of `held` that wait for the next
    user message.
    """

    max_seen: int
    held: frozenset[int]
    silent: frozenset[int]


def unshown(found: PendingDigest, seen: Optional[Seen]) -> tuple[int, int]:
    """The one rule for "results not yet shown to the model": of the server's
    `found.unacknowledged` completions (the seqs in (acked_seq, last_seq]),
    how many the model has not been shown, as (waiting, silent): `silent`
    wait for the next user message (SILENT delivery), `waiting` for a turn
    boundary, or have not reached the agent yet. Without `seen` (no agent
    drives the session here) nothing is known to be shown: the server's count."""
    if seen is None:
        return found.unacknowledged, 0
    low, high = found.acked_seq, found.last_seq
    held = sum(1 for s in seen.held if low < s <= high)
    shown = max(max(min(seen.max_seen, high) - low, 0) - held, 0)
    count = max(found.unacknowledged - shown, 0)
    silent = min(sum(1 for s in seen.silent if low < s <= high), count)
    return count - silent, silent


def digest_text(found: PendingDigest, seen: Optional[Seen]) -> str:
    """The digest the model reads, by `unshown`: the digest that leads a turn
    and the `errand_pending` session tool's answer both come from here.

    The server counts every completion not acknowledged yet, and an agent
    acknowledges after a turn, so its count takes in results the model is
    shown in the message it handles, or was shown already (by interrupt(),
    or in a turn whose acknowledgement a result still held keeps back). That
    sentence is made the results the model has not been shown: left out
    when there are none; else the server's sentence with that count for
    those that will come at a turn boundary, and, for SILENT ones, that they
    will be shown with the next user message (the model cannot see them,
    so they are not said to have arrived). Anything else, the pending calls
    above all, is the server's text verbatim, as is a text whose wording
    this SDK does not know.
    """
    text = found.text.rstrip()  # _join puts a blank line after it
    waiting, silent = unshown(found, seen)
    if (waiting, silent) == (found.unacknowledged, 0):
        return text
    said = _UNACKNOWLEDGED.search(text)
    if said is None:  # wording this SDK does not know (or cut): as the server said it
        return text
    if waiting + silent == 0:
        return text[: said.start()].rstrip()
    sentences = []
    if waiting:
        sentences.append(_unacknowledged_sentence(waiting))
    if silent:
        sentences.append(_silent_sentence(silent))
    return text[: said.start("count")] + " ".join(sentences)


# The agents started in this process, by session: `errand_pending` words its
# answer as the agent that drives its session words the digest it prepends.
_driving: dict[str, list[weakref.ref[TurnLoop]]] = {}
_driving_lock = threading.Lock()


def drives(agent: TurnLoop) -> None:
    """`agent` delivers its session's results from now on (until `stops`);
    once, however often it starts (on one event loop after another)."""
    with _driving_lock:
        refs = [r for r in _driving.get(agent.session_id, []) if r() not in (None, agent)]
        _driving[agent.session_id] = [*refs, weakref.ref(agent)]


def stops(agent: TurnLoop) -> None:
    with _driving_lock:
        refs = [r for r in _driving.get(agent.session_id, []) if r() not in (None, agent)]
        if refs:
            _driving[agent.session_id] = refs
        else:
            _driving.pop(agent.session_id, None)


def driver(session_id: str) -> Optional[TurnLoop]:
    """The agent that delivers `session_id`'s results in this process (None
    when none does, or more than one: which one's model asks is not known)."""
    with _driving_lock:
        live = [a for r in _driving.get(session_id, []) if (a := r()) is not None]
    live = [a for a in live if not a._closed]
    return live[0] if len(live) == 1 else None


async def session_digest(session_id: str, found: PendingDigest) -> tuple[str, int]:
    """`digest_text` and the count of `unshown` for a digest asked for outside
    the turn loop (the `errand_pending` session tool): with what the agent
    that drives the session in this process has shown its model, the
    message in its hands included; with the server's count when no agent does."""
    agent = driver(session_id)
    seen = None if agent is None else await agent._seen_from_anywhere()
    return digest_text(found, seen), sum(unshown(found, seen))


#: The digest's last sentence (server/src/text.rs, `digest`), with the
#: "No tool calls are pending. " that leads it when nothing is.
_UNACKNOWLEDGED = re.compile(
    r"(?P<lead>No tool calls are pending\. )?(?P<count>\d+ results? of earlier calls "
    r"(?:has|have) arrived and (?:has|have) not yet been acknowledged\.)$"
)


def _unacknowledged_sentence(count: int) -> str:
    """The server's sentence for `count` (> 0) unacknowledged results."""
    if count == 1:
        return "1 result of earlier calls has arrived and has not yet been acknowledged."
    return f"{count} results of earlier calls have arrived and have not yet been acknowledged."


def _silent_sentence(count: int) -> str:
    """The sentence for `count` (> 0) SILENT results the model has not seen."""
    if count == 1:
        return "1 result of earlier calls will be shown with the next user message."
    return f"{count} results of earlier calls will be shown with the next user message."
