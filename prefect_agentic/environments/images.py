"""Service images: a version of the service is the runtime image plus the service's code.

The code comes from a run's workspace, which is hostile: only regular files are taken, no link
is followed, nothing outside the service directory is read, and sizes are capped. The image is
built with networking off and tagged with a hash of what went in, so the same code is the
same tag and a rebuild is a no-op.
"""

from __future__ import annotations

import hashlib
import io
import stat
import tarfile

import docker

from prefect_agentic.boundary import WorkspaceFiles
from prefect_agentic.errors import ToolError, WorkspaceBoundaryError

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


def service_files(workspace: WorkspaceFiles, subdir: str) -> dict[str, bytes]:
    """The regular files under ``subdir`` (relative path -> bytes); links are skipped, never followed."""
    try:
        files = workspace.sub(subdir) if subdir not in ("", ".") else workspace
        if not files.is_dir():
            raise ServiceImageError(f"service path {workspace.describe(subdir)!r} is not a directory")
        found: dict[str, bytes] = {}
        total = 0
        for directory, dirnames, filenames in files.walk():
            dirnames[:] = sorted(d for d in dirnames if d not in _SKIP_DIRS)
            for name in sorted(filenames):
                rel = f"{directory}/{name}" if directory else name
                info = files.lstat(rel)
                if info is None or not stat.S_ISREG(info.st_mode):
                    continue  # a link or a special file: not part of the image
                data = files.read_bytes(rel, limit=MAX_BYTES)
                total += len(data)
                if len(found) >= MAX_FILES or total > MAX_BYTES:
                    raise ServiceImageError(f"service '{subdir}' is larger than {MAX_FILES} files / {MAX_BYTES} bytes")
                found[rel] = data
    except WorkspaceBoundaryError as exc:
        raise ServiceImageError(f"service path '{subdir}': {exc}") from None
    if "shop/app.py" not in found:
        raise ServiceImageError(f"'{subdir or '.'}' holds no service (shop/app.py is missing)")
    return found


def build_context(files: dict[str, bytes], runtime_image: str) -> tuple[bytes, str]:
    """A tar build context of the files, and the content tag of the image it makes."""
    digest = hashlib.sha256(runtime_image.encode())
    buffer = io.BytesIO()
    with tarfile.TarFile(fileobj=buffer, mode="w") as tar:
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
