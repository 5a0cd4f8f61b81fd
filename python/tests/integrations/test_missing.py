"""Without its framework, an adapter says which extra to install; errand itself never needs one."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

# adapter module, the framework's top-level package, the extra that installs it
ADAPTERS = [
    ("strands", "strands", "strands"),
    ("openai_agents", "agents", "openai-agents"),
    ("langchain", "langchain_core", "langchain"),
    ("pydantic_ai", "pydantic_ai", "pydantic-ai"),
]


@pytest.mark.parametrize(("adapter", "framework", "extra"), ADAPTERS)
def test_missing_framework_names_the_extra(
    monkeypatch: pytest.MonkeyPatch, adapter: str, framework: str, extra: str
) -> None:
    # None in sys.modules makes `import framework` (and its loaded submodules) fail.
    for name in [m for m in sys.modules if m == framework or m.startswith(f"{framework}.")]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, framework, None)
    monkeypatch.delitem(sys.modules, f"errand.integrations.{adapter}", raising=False)
    with pytest.raises(ImportError) as info:
        importlib.import_module(f"errand.integrations.{adapter}")
    assert f"pip install 'errand-sdk[{extra}]'" in str(info.value)
    assert f"errand.integrations.{adapter} needs" in str(info.value)


def test_errand_and_the_integrations_package_import_no_framework() -> None:
    code = (
        "import sys, errand, errand.integrations\n"
        "loaded = [m for m in ('strands', 'agents', 'langchain_core', 'pydantic_ai') "
        "if m in sys.modules]\n"
        "assert not loaded, loaded\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
