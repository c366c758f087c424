"""Service images: a version of the service is the runtime image plus the service's code.

The code comes from a run's workspace, which is hostile: only regular files are taken, no link
is followed, nothing outside the service directory is read, and sizes are capped. The image is
built with networking off and tagged with a hash of what went in, so the same code is the
same tag and a rebuild is a no-op.
"""

from __future__ import annotations

import hashlib
import io
import os
import stat
import tarfile
from pathlib import Path

import docker

from prefect_agentic.errors import ToolError

RUNTIME_IMAGE = "prefect-agentic/service-runtime:1"
SERVICE_REPOSITORY = "prefect-agentic/example-service"
MAX_FILES = 500
MAX_BYTES = 5_000_000
_SKIP_DIRS = {".git", "__pycache__", ".pytest_cache", ".agentic"}

DOCKERFILE = """\
ARG RUNTIME
FROM ${RUNTIME}
COPY app /app
WORKDIR /app
USER svc
EXPOSE 8000
CMD ["python3", "-m", "shop.app"]
"""


class ServiceImageError(ToolError):
    """The service's code could not be read or its image could not be built."""


def service_files(workspace: Path, subdir: str) -> dict[str, bytes]:
    """The regular files under ``workspace/subdir`` (relative path -> bytes), links never followed."""
    root = workspace.resolve()
    start = (root / subdir).resolve() if subdir not in ("", ".") else root
    if start != root and root not in start.parents:
        raise ServiceImageError(f"service path '{subdir}' leaves the workspace")
    files: dict[str, bytes] = {}
    total = 0
    for rel in _walk(start):
        data = _read_regular(start / rel)
        if data is None:
            continue
        total += len(data)
        if len(files) >= MAX_FILES or total > MAX_BYTES:
            raise ServiceImageError(f"service '{subdir}' is larger than {MAX_FILES} files / {MAX_BYTES} bytes")
        files[rel] = data
    if "shop/app.py" not in files:
        raise ServiceImageError(f"'{subdir or '.'}' holds no service (shop/app.py is missing)")
    return files


def _walk(start: Path) -> list[str]:
    found = []
    for dirpath, dirnames, filenames in os.walk(start, followlinks=False):
        dirnames[:] = sorted(d for d in dirnames if d not in _SKIP_DIRS and not os.path.islink(os.path.join(dirpath, d)))
        base = Path(dirpath).relative_to(start)
        found += [(base / name).as_posix() for name in sorted(filenames)]
    return found


def _read_regular(path: Path) -> bytes | None:
    """The file's bytes if it is a regular file (opened without following a link), else None."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
            return None
        return handle.read(MAX_BYTES + 1)


def build_context(files: dict[str, bytes], runtime_image: str) -> tuple[bytes, str]:
    """A tar build context of the files, and the content tag of the image it makes."""
    digest = hashlib.sha256(runtime_image.encode())
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        _add(tar, "Dockerfile", DOCKERFILE.encode())
        for rel, data in sorted(files.items()):
            digest.update(rel.encode() + b"\0" + hashlib.sha256(data).digest())
            _add(tar, f"app/{rel}", data)
    return buffer.getvalue(), f"{SERVICE_REPOSITORY}:{digest.hexdigest()[:12]}"


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode = len(data), 0o644
    tar.addfile(info, io.BytesIO(data))


def build_service_image(client: docker.DockerClient, files: dict[str, bytes],
                        runtime_image: str = RUNTIME_IMAGE) -> tuple[str, bool]:
    """Build (or find) the image of these files; returns (tag, whether it was built now)."""
    context, tag = build_context(files, runtime_image)
    try:
        client.images.get(tag)
        return tag, False
    except docker.errors.ImageNotFound:
        pass
    try:
        client.images.get(runtime_image)
    except docker.errors.ImageNotFound:
        raise ServiceImageError(f"runtime image '{runtime_image}' is missing; build it with "
                                "`scripts/build-service-image.sh` (or `scripts/setup.sh service_images`)") from None
    try:
        client.images.build(fileobj=io.BytesIO(context), custom_context=True, tag=tag, network_mode="none",
                            buildargs={"RUNTIME": runtime_image}, rm=True, forcerm=True)
    except (docker.errors.BuildError, docker.errors.APIError) as exc:
        raise ServiceImageError(f"building {tag} failed: {exc}") from None
    return tag, True
