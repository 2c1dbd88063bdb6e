"""Writing a tree's files into an empty folder, several files at a time.

Creating files dominates a checkout of a big tree, and the kernel can create files in parallel
where libgit2's checkout (one file after the other, several stat calls each) cannot. Blobs are
read in the calling thread (pygit2 holds the GIL); opening, writing and closing happen in a
small thread pool. Files are written as stored: no checkout filters, so this is only used when
none apply (see `filters_may_apply`).
"""

from __future__ import annotations

import os
from concurrent.futures import Future, ThreadPoolExecutor, wait

import pygit2
from pygit2.enums import FileMode

WRITERS = 4
MAX_PENDING = 512
_EXECUTABLE = FileMode.BLOB_EXECUTABLE
_ATTRIBUTES = ".gitattributes"


def filters_may_apply(repo: pygit2.Repository, tree: pygit2.Tree) -> bool:
    """Could checking `tree` out change a file's bytes (attributes, autocrlf, an eol setting)?"""
    config = repo.config
    for key in ("core.autocrlf", "core.eol", "core.attributesFile"):
        if key in config and not (key == "core.autocrlf" and config[key] in ("false", "input")):
            return True
    xdg = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    if os.path.exists(os.path.join(xdg, "git", "attributes")):
        return True
    return _has_attributes(repo, tree)


def _has_attributes(repo: pygit2.Repository, tree: pygit2.Tree) -> bool:
    stack = [tree]
    while stack:
        for entry in stack.pop():
            if entry.name == _ATTRIBUTES:
                return True
            if entry.filemode == FileMode.TREE:
                stack.append(repo[entry.id])
    return False


def _write_file(path: str, data: bytes, executable: bool) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o777 if executable else 0o666)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
    finally:
        os.close(fd)


def write_tree(repo: pygit2.Repository, tree: pygit2.Tree, root: str) -> None:
    """Create `tree`'s folders, files and symbolic links under the existing folder `root`.
    Submodules become empty folders, as git leaves them before `submodule update`."""
    pending: set[Future[None]] = set()
    with ThreadPoolExecutor(WRITERS) as pool:
        stack = [(tree, root)]
        while stack:
            folder, at = stack.pop()
            for entry in folder:
                path = os.path.join(at, entry.name)
                mode = entry.filemode
                if mode == FileMode.TREE:
                    os.mkdir(path)
                    stack.append((repo[entry.id], path))
                elif mode == FileMode.LINK:
                    os.symlink(repo[entry.id].data, path)
                elif mode == FileMode.COMMIT:
                    os.mkdir(path)
                else:
                    data = repo[entry.id].data
                    pending.add(pool.submit(_write_file, path, data, mode == _EXECUTABLE))
                    if len(pending) >= MAX_PENDING:
                        pending = _settle(pending, all_of_them=False)
        _settle(pending, all_of_them=True)


def _settle(pending: set[Future[None]], all_of_them: bool) -> set[Future[None]]:
    """Wait for some (or all) writes; the first failed write raises."""
    done, left = wait(pending, return_when="ALL_COMPLETED" if all_of_them else "FIRST_COMPLETED")
    for future in done:
        future.result()
    return left
