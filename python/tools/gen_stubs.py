"""Generate (or check) the Python stubs of the errand contract.

    python tools/gen_stubs.py           # write python/errand/v1/errand_pb2*.py(i)
    python tools/gen_stubs.py --check   # exit 1 if the committed stubs differ

The stubs are committed so that `pip install ./python` needs no code
generation; `--check` (run by run-tests.sh and by tests/test_stubs.py) keeps
them equal to what the pinned grpcio-tools makes of proto/errand/v1/errand.proto.
"""

from __future__ import annotations

import argparse
import filecmp
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
PYTHON_DIR = HERE.parent
REPO = PYTHON_DIR.parent
PROTO_ROOT = REPO / "proto"
PROTO = Path("errand/v1/errand.proto")
OUT_PACKAGE = PYTHON_DIR / "errand" / "v1"
FILES = ("errand_pb2.py", "errand_pb2.pyi", "errand_pb2_grpc.py")


def generate(out_root: Path) -> Path:
    """Run grpc_tools.protoc into out_root; return the folder holding the stubs."""
    try:
        import grpc_tools
        from grpc_tools import protoc
    except ImportError:  # pragma: no cover - depends on the environment
        sys.exit("grpcio-tools is not installed: pip install './python[dev]'")
    well_known = Path(grpc_tools.__file__).resolve().parent / "_proto"
    args = [
        "grpc_tools.protoc",
        f"-I{PROTO_ROOT}",
        f"-I{well_known}",
        f"--python_out={out_root}",
        f"--pyi_out={out_root}",
        f"--grpc_python_out={out_root}",
        str(PROTO),
    ]
    code = protoc.main(args)
    if code != 0:
        sys.exit(f"protoc failed with exit code {code}")
    return out_root / "errand" / "v1"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare, do not write")
    opts = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        produced = generate(Path(tmp))
        if opts.check:
            stale = [
                name
                for name in FILES
                if not (OUT_PACKAGE / name).exists()
                or not filecmp.cmp(produced / name, OUT_PACKAGE / name, shallow=False)
            ]
            if stale:
                print(
                    "generated stubs are stale: "
                    + ", ".join(stale)
                    + "\nrun: python python/tools/gen_stubs.py",
                    file=sys.stderr,
                )
                return 1
            print("generated stubs match proto/errand/v1/errand.proto")
            return 0
        OUT_PACKAGE.mkdir(parents=True, exist_ok=True)
        for name in FILES:
            (OUT_PACKAGE / name).write_bytes((produced / name).read_bytes())
        print(f"wrote {', '.join(FILES)} to {OUT_PACKAGE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
