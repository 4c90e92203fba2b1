"""Regenerate the control-plane Python code (``control_pb2*.py``, ``control_pb2.pyi``) from ``control.proto``.

    python -m spendgate_semconv.gen_control          # rewrite the committed files in place
    python -m spendgate_semconv.gen_control --check  # exit 1 when they differ from the .proto

Needs ``grpcio-tools`` (a dev dependency only: the generated code is committed, so installing
spendgate never runs protoc). The proto is compiled as ``spendgate_semconv/control.proto`` with the
``semconv/`` folder as include root, so the generated gRPC module imports
``spendgate_semconv.control_pb2`` rather than a top-level ``control_pb2`` that would not resolve.
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
INCLUDE_ROOT = PACKAGE_DIR.parent
PROTO = "spendgate_semconv/control.proto"
GENERATED = ("control_pb2.py", "control_pb2_grpc.py", "control_pb2.pyi")


def generate(out_dir: Path) -> dict[str, bytes]:
    """Compile the proto into ``out_dir`` and return ``{file name: contents}`` of the generated files."""
    from grpc_tools import protoc  # imported here: a dev-only dependency

    args = [
        "grpc_tools.protoc",
        f"-I{INCLUDE_ROOT}",
        f"--python_out={out_dir}",
        f"--pyi_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        PROTO,
    ]
    code = protoc.main(args)
    if code != 0:
        raise RuntimeError(f"protoc failed with exit code {code} on {INCLUDE_ROOT / PROTO}")
    made = out_dir / "spendgate_semconv"
    return {name: (made / name).read_bytes() for name in GENERATED}


# The generator stamps its own version into the code: the runtime then refuses an older grpcio or
# protobuf. Those stamps follow whichever grpcio-tools is installed, not the proto, so a newer tool
# must not make the committed code "stale"; the stamps are checked against pyproject's floors instead
# (stamped_versions), since they decide the oldest runtime the package can import with.
_STAMPS = (
    (re.compile(rb"^GRPC_GENERATED_VERSION = '[^']*'$", re.M), b"GRPC_GENERATED_VERSION = '<stamp>'"),
    (re.compile(rb"^# Protobuf Python Version: .*$", re.M), b"# Protobuf Python Version: <stamp>"),
    (
        re.compile(rb"(_runtime_version\.Domain\.PUBLIC,\n)\s*\d+,\n\s*\d+,\n\s*\d+,\n\s*'[^']*',\n"),
        rb"\1    <stamp>\n",
    ),
)
_GRPC_STAMP = re.compile(r"^GRPC_GENERATED_VERSION = '([^']*)'$", re.M)
_PROTOBUF_STAMP = re.compile(r"^# Protobuf Python Version: (\S+)$", re.M)


def without_version_stamps(content: bytes) -> bytes:
    """Generated code with the generator's version stamps replaced by a placeholder."""
    for pattern, placeholder in _STAMPS:
        content = pattern.sub(placeholder, content)
    return content


def stamped_versions() -> dict[str, str]:
    """The minimum runtime versions the committed code demands: ``{"grpcio": …, "protobuf": …}``."""
    grpc_code = (PACKAGE_DIR / "control_pb2_grpc.py").read_text()
    messages = (PACKAGE_DIR / "control_pb2.py").read_text()
    found = {}
    for package, pattern, text in (("grpcio", _GRPC_STAMP, grpc_code), ("protobuf", _PROTOBUF_STAMP, messages)):
        match = pattern.search(text)
        if match:
            found[package] = match.group(1)
    return found


def stale_files() -> list[str]:
    """Names of committed generated files whose code differs from what the proto generates now."""
    with tempfile.TemporaryDirectory() as tmp:
        fresh = generate(Path(tmp))
    stale = []
    for name, content in fresh.items():
        path = PACKAGE_DIR / name
        if not path.exists() or without_version_stamps(path.read_bytes()) != without_version_stamps(content):
            stale.append(name)
    return stale


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only report whether the committed files are stale")
    args = parser.parse_args(argv)
    if args.check:
        stale = stale_files()
        for name in stale:
            print(f"stale: {PACKAGE_DIR / name}", file=sys.stderr)
        return 1 if stale else 0
    with tempfile.TemporaryDirectory() as tmp:
        for name, content in generate(Path(tmp)).items():
            (PACKAGE_DIR / name).write_bytes(content)
            print(f"wrote {PACKAGE_DIR / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
