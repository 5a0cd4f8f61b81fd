"""What mypy --strict sees in user code: `@async_tool(manager)` gives a
callable that returns the acknowledgement text and has `.submit`, `.run` and
`.tool_info`; `AsyncAgent.submit` gives an `Ack`."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

api = pytest.importorskip("mypy.api")

USER_CODE = textwrap.dedent(
    """
    from errand import Ack, AsyncAgent, AsyncClient, AsyncToolManager, ToolInfo, async_tool

    manager = AsyncToolManager(max_workers=2)

    @async_tool(manager)
    def count(x: int) -> int:
        return x + 1

    @async_tool(manager, name="acount", timeout_ms=5)
    async def acount(x: int) -> int:
        return x + 1

    @async_tool
    def bare(x: int) -> int:
        return x + 1

    text: str = count(x=1)
    ack: Ack = count.submit(x=1)
    value: int = count.run(x=1)
    info: ToolInfo = count.tool_info
    plain: int = bare(3)

    class Chat:
        async def send(self, message: str) -> str:
            return message

    async def main() -> None:
        atext: str = await acount(x=1)
        aack: Ack = acount.submit(x=1)
        avalue: int = await acount.run(x=1)
        async with AsyncClient() as client, AsyncAgent(Chat(), client) as agent:
            submitted: Ack = await agent.submit("count", x=1)
            print(atext, aack, avalue, submitted)

    def blocking(agent: AsyncAgent) -> str:
        return agent.submit("count", x=1).task_id

    bad_sum = count(x=1) + 1  # E: str + int
    bad_arg = count(x="one")  # E: not an int
    bad_submit = count.submit(y=1)  # E: no such argument
    """
)


def test_mypy_strict_sees_the_manager_tools_and_acks(tmp_path: Path) -> None:
    source = tmp_path / "user_code.py"
    source.write_text(USER_CODE)
    out, err, _status = api.run(
        ["--strict", "--no-incremental", "--cache-dir", str(tmp_path / "cache"), str(source)]
    )
    errors = [line for line in out.splitlines() if ": error:" in line]
    lines = USER_CODE.splitlines()
    flagged = {int(line.split(":")[1]) for line in errors}
    expected = {i + 1 for i, text in enumerate(lines) if "# E:" in text}
    assert flagged == expected, out + err
