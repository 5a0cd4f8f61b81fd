"""The committed stubs are exactly what the pinned grpcio-tools makes of the proto."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

GEN = Path(__file__).resolve().parents[1] / "tools" / "gen_stubs.py"


def test_committed_stubs_match_the_proto() -> None:
    pytest.importorskip("grpc_tools")
    done = subprocess.run(
        [sys.executable, str(GEN), "--check"], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr


def test_stubs_import_from_the_package() -> None:
    from errand.v1 import errand_pb2, errand_pb2_grpc

    assert errand_pb2.DESCRIPTOR.package == "errand.v1"
    assert hasattr(errand_pb2_grpc, "ToolServiceStub")
    assert hasattr(errand_pb2_grpc, "WorkerServiceStub")
