"""Regenerate (or check) the Python gRPC code of ``reward.proto``.

    python -m vlmrl.reward_workers.proto.generate          # rewrite reward_pb2*.py
    python -m vlmrl.reward_workers.proto.generate --check  # exit 1 if they are stale

grpc_tools writes ``import reward_pb2``; we rewrite it to a package-relative import so the
generated modules work as ``vlmrl.reward_workers.proto.reward_pb2``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

PROTO_DIR = Path(__file__).resolve().parent
PROTO = "reward.proto"
OUTPUTS = ("reward_pb2.py", "reward_pb2.pyi", "reward_pb2_grpc.py")


def generate() -> dict[str, str]:
    """Run protoc on reward.proto and return {file name: generated text}."""
    from grpc_tools import protoc  # dev dependency

    with tempfile.TemporaryDirectory() as tmp:
        args = [
            "protoc",
            f"-I{PROTO_DIR}",
            f"--python_out={tmp}",
            f"--pyi_out={tmp}",
            f"--grpc_python_out={tmp}",
            str(PROTO_DIR / PROTO),
        ]
        if protoc.main(args) != 0:
            raise RuntimeError(f"protoc failed: {' '.join(args)}")
        out = {name: (Path(tmp) / name).read_text() for name in OUTPUTS}
    out["reward_pb2_grpc.py"] = out["reward_pb2_grpc.py"].replace(
        "import reward_pb2 as reward__pb2", "from . import reward_pb2 as reward__pb2"
    )
    return out


def stale_files() -> list[str]:
    """Names of checked-in generated files that differ from what protoc writes now."""
    return [name for name, text in generate().items()
            if not (PROTO_DIR / name).exists() or (PROTO_DIR / name).read_text() != text]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="exit 1 if the checked-in code is stale")
    args = parser.parse_args(argv)
    if args.check:
        stale = stale_files()
        if stale:
            print(f"stale generated code: {stale}; run python -m vlmrl.reward_workers.proto.generate")
            return 1
        print("generated code is up to date")
        return 0
    for name, text in generate().items():
        (PROTO_DIR / name).write_text(text)
        print(f"wrote {PROTO_DIR / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
