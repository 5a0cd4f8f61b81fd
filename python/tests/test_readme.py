"""The READMEs' first Python snippets, run as written, twice in a row.

A session's stream replays the completions the server still holds, so a
snippet that printed the first completion it saw would print the first run's
result on the second run. Each run must print its own task's result.
"""

from __future__ import annotations

import contextlib
import io
import re

import pytest

from .conftest import REPO

BLOCK = re.compile(r"```python\n(.*?)```", re.S)
ACK = re.compile(r"^Task (\S+) submitted", re.M)


def first_snippet(readme: str) -> str:
    match = BLOCK.search((REPO / readme).read_text())
    assert match, f"no python block in {readme}"
    return match.group(1)


@pytest.mark.parametrize("readme", ["python/README.md", "README.md"])
def test_the_first_snippet_prints_its_own_result_each_run(server: str, readme: str) -> None:
    code = first_snippet(readme)
    seen: list[str] = []
    for _ in range(2):
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            exec(compile(code, readme, "exec"), {"__name__": "__readme__"})
        text = out.getvalue()
        acked = ACK.search(text)
        assert acked, text
        task_id = acked.group(1)
        assert f"{task_id} Findings about tides..." in text, text
        seen.append(task_id)
    assert seen[0] != seen[1]
