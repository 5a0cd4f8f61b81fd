"""`AsyncAgent`: deliver a session's async tool results to a conversational agent.

The agent protocol is small. The wrapped object must offer

    send(message: str) -> Any          # plain or `async def`; returns when the turn is over

and may offer

    is_idle() -> bool                  # False while it is busy for reasons of its own

`AsyncAgent` holds the session's completion stream and, as in the seed text,
delivers each result **at once** when the agent is idle, **queues** it while
the agent is busy (a turn is running, or `is_idle()` says False), and
**drains** the queue after each turn: everything that arrived meanwhile goes
to the agent as one batched message, in completion order, each result naming
its task id and tool. `on_status(status, completions)` hears "queued",
"draining" and "delivered".

    async with AsyncClient(addr) as client, AsyncAgent(my_agent, client) as agent:
        await agent.send("Research tides and moons for me.")
        ...

Delivered results stay in the model's history; `prune_history` (or
`AsyncAgent.prune`) drops them again once they have served their purpose.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Callable, Optional, Protocol, TypeVar, Union, runtime_checkable

from errand.aio import AsyncClient, AsyncCompletionStream
from errand.types import Ack, Completion

__all__ = ["Agent", "AsyncAgent", "default_batch_text", "prune_history"]

log = logging.getLogger("errand.agent")

#: The status names passed to `on_status`.
QUEUED = "queued"
DRAINING = "draining"
DELIVERED = "delivered"

StatusCallback = Callable[[str, Sequence[Completion]], Any]
M = TypeVar("M")


@runtime_checkable
class Agent(Protocol):
    """What `AsyncAgent` wraps: anything with `send(message)`.

    `send` may be a plain method (run on a thread, so the completion stream
    keeps flowing meanwhile) or a coroutine function; it returns when the
    model's turn is over. An optional `is_idle()` lets the agent report that
    it is busy outside `send` (streaming to its user, say); call
    `AsyncAgent.drain()` when it becomes idle again.
    """

    def send(self, message: str) -> Any: ...


def default_batch_text(completions: Sequence[Completion]) -> str:
    """One message for results that arrived while the agent was busy."""
    if len(completions) == 1:
        return completions[0].text()
    parts = [
        f"{len(completions)} async tool results arrived while you were busy (in completion order):"
    ]
    parts.extend(f"[{i}] {c.text()}" for i, c in enumerate(completions, 1))
    return "\n\n".join(parts)


class AsyncAgent:
    """Wraps an agent and feeds it a session's completions as they arrive.

    Args:
        agent: the object to deliver to (see `Agent`).
        client: the `AsyncClient` to follow the session with.
        session_id: the session (default: the client's).
        after_seq: resume after this completion seq (0: everything retained).
        on_status: called with ("queued" | "draining" | "delivered", completions);
            may be a coroutine function.
        ack: tell the server to drop completions once delivered (AckCompletions);
            this drops them for every stream of the session, so pass False
            when something else also reads the session's completions.
        format_batch: turns a list of completions into one message.
    """

    def __init__(
        self,
        agent: Agent,
        client: AsyncClient,
        *,
        session_id: Optional[str] = None,
        after_seq: int = 0,
        on_status: Optional[StatusCallback] = None,
        ack: bool = True,
        format_batch: Callable[[Sequence[Completion]], str] = default_batch_text,
    ) -> None:
        self.agent = agent
        self.client = client
        self.session_id = session_id or client.session_id
        self.on_status = on_status
        self.ack = ack
        self.format_batch = format_batch
        self.last_error: Optional[BaseException] = None
        self._after_seq = after_seq
        self._pending: list[Completion] = []
        self._delivered: list[Completion] = []
        self._delivered_texts: list[str] = []
        self._busy = False
        self._cond: Optional[asyncio.Condition] = None
        self._stream: Optional[AsyncCompletionStream] = None
        self._listener: Optional[asyncio.Task[None]] = None
        self._turns: set[asyncio.Task[None]] = set()

    # -- lifecycle -------------------------------------------------------------
    async def start(self) -> AsyncAgent:
        """Open the session's completion stream and start delivering."""
        if self._listener is not None:
            return self
        self._cond = asyncio.Condition()
        self._stream = self.client.completions(self.session_id, after_seq=self._after_seq)
        self._listener = asyncio.ensure_future(self._listen(self._stream))
        return self

    async def close(self) -> None:
        """Stop following the stream; waits for a delivery in progress to end."""
        if self._stream is not None:
            await self._stream.aclose()
        if self._listener is not None:
            self._listener.cancel()
            try:
                await self._listener
            except (asyncio.CancelledError, Exception):
                pass
        if self._turns:
            await asyncio.gather(*self._turns, return_exceptions=True)

    async def __aenter__(self) -> AsyncAgent:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- state -----------------------------------------------------------------
    @property
    def busy(self) -> bool:
        """True while a turn (a `send` or a delivery) is running."""
        return self._busy

    @property
    def pending(self) -> list[Completion]:
        """Results queued for the next drain, in completion order."""
        return list(self._pending)

    @property
    def delivered(self) -> list[Completion]:
        """Results handed to the agent so far, in delivery order."""
        return list(self._delivered)

    @property
    def last_seq(self) -> int:
        """Seq of the last completion received (persist it to resume with after_seq)."""
        return self._stream.last_seq if self._stream is not None else self._after_seq

    # -- the agent's side --------------------------------------------------------
    async def submit(
        self, tool: str, arguments: Optional[Mapping[str, Any]] = None, /, **kwargs: Any
    ) -> Ack:
        """Submit a tool call in this agent's session (see `AsyncClient.submit`)."""
        return await self.client.submit(tool, arguments, session_id=self.session_id, **kwargs)

    async def send(self, message: str) -> Any:
        """Run one turn with `message`, then drain results that arrived meanwhile.

        Waits for a turn already running (a delivery, say) to end first.
        Returns what the agent's `send` returned.
        """
        await self._begin_turn()
        try:
            reply = await self._call_agent(message)
            await self._drain_queue()
            return reply
        finally:
            await self._end_turn()

    async def drain(self) -> None:
        """Deliver queued results now, if the agent is idle.

        Needed only for agents whose `is_idle()` turns True outside `send`.
        """
        if not self._pending or self._busy or not self._agent_idle():
            return
        await self._begin_turn()
        try:
            await self._drain_queue()
        finally:
            await self._end_turn()

    async def on_completion(self, completion: Completion) -> None:
        """Take one completion: deliver it now if idle, else queue it.

        The stream listener calls this; call it yourself to feed completions
        from elsewhere.
        """
        if self._busy or not self._agent_idle():
            self._pending.append(completion)
            await self._status(QUEUED, [completion])
            return
        self._busy = True  # claimed synchronously: nothing can start a turn in between
        task = asyncio.ensure_future(self._delivery_turn(completion))
        self._turns.add(task)
        task.add_done_callback(self._turns.discard)

    def prune(self, history: Sequence[M], *, keep_last: int = 0) -> list[M]:
        """`prune_history` with the results this agent delivered."""
        return prune_history(history, self._delivered_texts, keep_last=keep_last)

    # -- internals ---------------------------------------------------------------
    async def _listen(self, stream: AsyncCompletionStream) -> None:
        try:
            async for completion in stream:
                await self.on_completion(completion)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.last_error = exc
            log.error("errand AsyncAgent: completion stream failed: %s", exc)

    async def _delivery_turn(self, completion: Completion) -> None:
        try:
            await self._deliver([completion])
            await self._drain_queue()
        except Exception as exc:
            self.last_error = exc
            log.error("errand AsyncAgent: delivery failed: %s", exc)
        finally:
            await self._end_turn()

    async def _begin_turn(self) -> None:
        if self._cond is None:
            self._cond = asyncio.Condition()
        async with self._cond:
            await self._cond.wait_for(lambda: not self._busy)
            self._busy = True

    async def _end_turn(self) -> None:
        assert self._cond is not None
        async with self._cond:
            self._busy = False
            self._cond.notify_all()

    async def _drain_queue(self) -> None:
        while self._pending and self._agent_idle():
            batch, self._pending = self._pending, []
            await self._status(DRAINING, batch)
            try:
                await self._deliver(batch)
            except BaseException:
                self._pending[:0] = batch
                raise

    async def _deliver(self, batch: list[Completion]) -> None:
        text = self.format_batch(batch)
        await self._call_agent(text)
        self._delivered.extend(batch)
        self._delivered_texts.append(text)
        await self._status(DELIVERED, batch)
        if self.ack:
            try:
                await self.client.ack_completions(
                    max(c.seq for c in batch), session_id=self.session_id
                )
            except Exception as exc:  # the results are delivered; acking is an optimisation
                log.warning("errand AsyncAgent: AckCompletions failed: %s", exc)

    async def _call_agent(self, message: str) -> Any:
        send = self.agent.send
        if inspect.iscoroutinefunction(send):
            return await send(message)
        result = await asyncio.to_thread(send, message)
        if inspect.isawaitable(result):
            return await result
        return result

    def _agent_idle(self) -> bool:
        is_idle = getattr(self.agent, "is_idle", None)
        return bool(is_idle()) if callable(is_idle) else True

    async def _status(self, status: str, completions: list[Completion]) -> None:
        if self.on_status is None:
            return
        try:
            result = self.on_status(status, list(completions))
            if inspect.isawaitable(result):
                await result
        except Exception as exc:
            log.warning("errand AsyncAgent: on_status(%s) raised: %s", status, exc)


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
    call/result pairs that model APIs require stay intact.
    """
    needles = [d.text() if isinstance(d, Completion) else d for d in delivered]
    needles = [n for n in needles if n]
    hits = [
        i
        for i, message in enumerate(history)
        if (text := _message_text(message)) and any(n in text for n in needles)
    ]
    drop = set(hits[: len(hits) - keep_last] if keep_last > 0 else hits)
    return [m for i, m in enumerate(history) if i not in drop]
