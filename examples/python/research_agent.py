#!/usr/bin/env python3
"""The seed text's research agent, end to end over errand, with a scripted model.

The tool below is the seed's `research_topic`, as written there apart from the
import (and the sleep, which reads RESEARCH_SECONDS so a test need not wait
15 s). The same process serves it as a worker (`AsyncToolManager`) and runs an
agent: a scripted stand-in for a model decides to call the tool twice, gets
the acks at once, keeps talking to its user, and receives the findings through
`AsyncAgent` when they arrive.

    errand serve --listen 127.0.0.1:7466 --store memory &
    ERRAND_SERVER=127.0.0.1:7466 RESEARCH_SECONDS=2 python examples/python/research_agent.py
"""

from __future__ import annotations

import asyncio
import os
import re
import sys
import time
from typing import Any

from errand import AsyncAgent, AsyncClient, AsyncToolManager, Completion, async_tool, openai_tools

manager = AsyncToolManager(max_workers=4)


@async_tool(manager)
def research_topic(topic: str) -> str:
    """Research a topic thoroughly and return detailed findings."""
    time.sleep(float(os.environ.get("RESEARCH_SECONDS", "15")))  # simulate slow API call
    return f"Findings about {topic}..."


# --- a scripted stand-in for a model ------------------------------------------------

UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
FINDINGS = re.compile(r"Findings about [A-Za-z ]+")


class ScriptedModel:
    """Answers like a model would, from the conversation so far (OpenAI-style messages)."""

    def __init__(self, tools: list[dict[str, Any]]) -> None:
        names = {t["function"]["name"] for t in tools}
        if "research_topic" not in names:
            raise RuntimeError(f"research_topic is not among the tools: {sorted(names)}")
        self._calls = 0

    def respond(self, history: list[dict[str, Any]]) -> dict[str, Any]:
        last = history[-1]
        acked = {i for m in history if m["role"] == "tool" for i in UUID.findall(m["content"])}
        answered = {
            i
            for m in history
            if m["role"] == "user" and FINDINGS.search(m["content"])
            for i in UUID.findall(m["content"])
        }
        waiting = len(acked - answered)
        if last["role"] == "tool":
            return {
                "content": "I've started the research; the results will arrive later and I "
                "won't guess them. Ask me anything meanwhile."
            }
        text = last["content"]
        asked = re.match(r"Please research (.+)\.$", text)
        if asked:
            calls = []
            for topic in re.split(r",\s*|\s+and\s+", asked.group(1)):
                self._calls += 1
                call_id = f"call_{self._calls}"
                calls.append({"id": call_id, "name": "research_topic", "args": {"topic": topic}})
            return {"tool_calls": calls}
        findings = FINDINGS.findall(text)
        if findings:
            ids = [i for i in UUID.findall(text) if i in acked]
            pairs = "; ".join(f"task {i}: {f}" for i, f in zip(ids, findings))
            return {"content": f"Results are in: {pairs}. Still waiting on {waiting}."}
        if text.startswith("Thanks"):
            return {"content": "You're welcome."}
        return {"content": f"2 + 2 = 4. (Still waiting on {waiting} research task(s).)"}


class ResearchAgent:
    """The agent `AsyncAgent` wraps: `send(message)` runs one model turn, tools included."""

    def __init__(self, client: AsyncClient, model: ScriptedModel) -> None:
        self.client = client
        self.model = model
        self.history: list[dict[str, Any]] = []
        self._busy = False

    def is_idle(self) -> bool:
        return not self._busy

    async def send(self, message: str) -> str:
        self._busy = True
        try:
            self.history.append({"role": "user", "content": message})
            print(f"user   > {message}", flush=True)
            while True:
                reply = self.model.respond(self.history)
                if "tool_calls" not in reply:
                    self.history.append({"role": "assistant", "content": reply["content"]})
                    print(f"model  > {reply['content']}", flush=True)
                    return str(reply["content"])
                self.history.append({"role": "assistant", "tool_calls": reply["tool_calls"]})
                for call in reply["tool_calls"]:
                    ack = await self.client.submit(call["name"], call["args"])
                    print(f"tool   > {call['name']}({call['args']}) -> task {ack.task_id}")
                    self.history.append(
                        {"role": "tool", "tool_call_id": call["id"], "content": ack.ack}
                    )
        finally:
            self._busy = False


async def main() -> int:
    timeout = float(os.environ.get("RESEARCH_TIMEOUT", "120"))
    manager.start()
    try:
        async with AsyncClient() as client:
            model = ScriptedModel(openai_tools(await client.list_tools()))
            agent = ResearchAgent(client, model)
            delivered: list[Completion] = []
            all_in = asyncio.Event()

            def on_status(status: str, completions: list[Completion]) -> None:
                print(f"[{status}] " + ", ".join(f"{c.tool} {c.task_id}" for c in completions))
                if status == "delivered":
                    delivered.extend(completions)
                    if len(delivered) >= 2:
                        all_in.set()

            async with AsyncAgent(agent, client, on_status=on_status) as async_agent:
                await async_agent.send("Please research tides and volcanoes.")
                await async_agent.send("While that runs: what is 2 + 2?")
                await asyncio.wait_for(all_in.wait(), timeout)
                await async_agent.send("Thanks, that's all.")
                pruned = async_agent.prune(agent.history)
            print(f"history: {len(agent.history)} messages, {len(pruned)} after pruning results")
            found = sorted(str(c.result) for c in delivered)
            print("findings: " + " | ".join(found))
            return 0 if found == ["Findings about tides...", "Findings about volcanoes..."] else 1
    finally:
        manager.stop()


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
