import subprocess


def disk_usage(path: str) -> str:
    """``du -sh`` of ``path``."""
    return subprocess.run(["du", "-sh", path], capture_output=True, text=True, check=True).stdout
