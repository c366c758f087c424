"""Build a wheelhouse from the example packages here, offline and byte for byte reproducibly.

Each directory ``NAME-VERSION/`` holds the files of one pure-Python
distribution; it becomes ``NAME-VERSION-py3-none-any.whl`` in the output
directory. Usage: ``python examples/packages/build_wheelhouse.py OUT_DIR``.
"""

from __future__ import annotations

import base64
import hashlib
import sys
import zipfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
FIXED_TIME = (2026, 1, 1, 0, 0, 0)


def build_wheel(source: Path, out: Path) -> Path:
    name, version = source.name.rsplit("-", 1)
    info = f"{name}-{version}.dist-info"
    files = {p.relative_to(source).as_posix(): p.read_bytes()
             for p in sorted(source.rglob("*")) if p.is_file() and "__pycache__" not in p.parts}
    files[f"{info}/METADATA"] = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n".encode()
    files[f"{info}/WHEEL"] = (b"Wheel-Version: 1.0\nGenerator: prefect-agentic-examples\n"
                              b"Root-Is-Purelib: true\nTag: py3-none-any\n")
    record = [f"{path},sha256={_digest(data)},{len(data)}" for path, data in files.items()]
    files[f"{info}/RECORD"] = ("\n".join([*record, f"{info}/RECORD,,"]) + "\n").encode()
    wheel = out / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w", zipfile.ZIP_DEFLATED) as zf:
        for path, data in files.items():
            zf.writestr(zipfile.ZipInfo(path, FIXED_TIME), data)
    return wheel


def _digest(data: bytes) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for source in sorted(p for p in HERE.iterdir() if p.is_dir() and "-" in p.name):
        print(build_wheel(source, out).name)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
