"""Path rules: every path hostd touches lies inside base_dir."""

from __future__ import annotations

import os

from hostd.git.errors import PathError

MAX_PATH_BYTES = 4096


def real_path(path: str) -> str:
    """`os.path.realpath(path)`; for an existing path, as the kernel resolves it (one open
    instead of a system call per path component)."""
    try:
        fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
    except (OSError, ValueError):
        return os.path.realpath(path)
    try:
        resolved = os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        resolved = ""
    finally:
        os.close(fd)
    return resolved if resolved.startswith(os.sep) else os.path.realpath(path)


Identity = tuple[int, int] | None


def identity(path: str) -> Identity:
    """Which file `path` names now (device and inode, symlinks followed); None if none."""
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return None
    return (st.st_dev, st.st_ino)


def within(path: str, root: str) -> bool:
    """True when `path` is `root` or lies below it (both absolute and normalised)."""
    if path == root:
        return True
    prefix = root if root.endswith(os.sep) else root + os.sep
    return path.startswith(prefix)


def check_request_path(raw: str | None, base_dir: str) -> str:
    """Validate a `path` parameter; return it absolute and normalised.

    The lexical path must lie inside base_dir, and so must the path with its symlinks
    resolved (a link inside base_dir must not expose a repository outside it).
    """
    if raw is None or raw == "":
        return base_dir
    if "\0" in raw:
        raise PathError("path must not contain NUL bytes")
    if len(os.fsencode(raw)) > MAX_PATH_BYTES:
        raise PathError(f"path is longer than {MAX_PATH_BYTES} bytes")
    path = os.path.normpath(os.path.join(base_dir, raw))
    outside = PathError(f"path must be within base_dir: {base_dir}")
    if not within(path, base_dir):
        raise outside
    try:
        exists = os.path.lexists(path)
    except (OSError, ValueError):
        exists = False
    if not exists:
        raise PathError(f"path does not exist: {path}")
    if not within(real_path(path), real_path(base_dir)):
        raise outside
    return path
