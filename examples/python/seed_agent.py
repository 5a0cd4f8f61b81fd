#!/usr/bin/env python3
"""The seed text's decorator, manager and agent wrapper, run as written there.

The code between the markers is the seed's, apart from the import line (and
the sleep, which reads RESEARCH_SECONDS so that a test need not wait 15 s).
No asyncio in sight: `agent.send(...)` blocks for one turn, the tool calls
answer at once with an acknowledgement, and the findings reach the agent when
they are ready, while it talks to its user.

    errand serve --listen 127.0.0.1:7466 --store memory &
    RESEARCH_SECONDS=2 python examples/python/seed_agent.py
"""

import os
import sys
import threading

# --- the seed's code (its imports sorted) --------------------------------------
import time
import uuid  # noqa: F401 - imported by the seed's snippet

from errand import AsyncAgent, AsyncToolManager, async_tool

manager = AsyncToolManager(max_workers=4)


@async_tool(manager)
def research_topic(topic: str) -> str:
    """Research a topic thoroughly and return detailed findings."""
    time.sleep(float(os.environ.get("RESEARCH_SECONDS", "15")))  # simulate slow API call
    return f"Findings about {topic}..."
# ------------------------------------------------------------------------------


class MyAgent:
    """A stand-in for a framework's agent, with a scripted model: `send(prompt)`
    runs one turn, calling the tool the way a framework does when the model asks."""

    def __init__(self) -> None:
        self.busy = False
        self.findings = 0
        self.all_in = threading.Event()

    def is_idle(self) -> bool:
        return not self.busy

    def send(self, prompt: str) -> str:
        self.busy = True
        try:
            print(f"agent <- {prompt}", flush=True)
            if prompt.startswith("Research"):
                for topic in ("tides", "volcanoes"):
                    ack = research_topic(topic=topic)  # answers at once
                    print(f"tool  -> {ack}", flush=True)
                reply = "I've started the research and won't guess the results."
            else:
                self.findings += prompt.count("Findings about")
                reply = "2 + 2 = 4." if "2 + 2" in prompt else "Noted."
                if self.findings:
                    reply += f" Results so far: {self.findings} of 2."
                if self.findings >= 2:
                    self.all_in.set()
            print(f"agent -> {reply}", flush=True)
            return reply
        finally:
            self.busy = False


def main() -> int:
    my_agent = MyAgent()
    agent = AsyncAgent(my_agent, manager)  # registers as the manager's completion callback
    try:
        agent.send("Research tides and volcanoes, please.")
        agent.send("While that runs: what is 2 + 2?")
        ok = my_agent.all_in.wait(float(os.environ.get("RESEARCH_TIMEOUT", "120")))
        print("all findings in" if ok else "timed out waiting for the findings", flush=True)
        return 0 if ok else 1
    finally:
        agent.close()
        manager.stop()


if __name__ == "__main__":
    sys.exit(main())
