"""A `GIT binary patch` as git prints it, from the one libgit2 computes.

libgit2 and git compute the same deltas but deflate at different levels (git: core.compression,
by default zlib's fastest), so the base85 lines and, where the two sizes are close, the choice
between `literal` and `delta` differ. Each block is decoded and deflated again git's way.
"""

from __future__ import annotations

import base64
import zlib

import pygit2

_LINE = 52
GIT_COMPRESSION = zlib.Z_BEST_SPEED


def compression_level(repo: pygit2.Repository) -> int:
    """core.compression as git applies it (-1 is zlib's default, 0-9 a level)."""
    try:
        level = repo.config.get_int("core.compression")
    except (KeyError, ValueError, pygit2.GitError):
        return GIT_COMPRESSION
    return level if -1 <= level <= 9 else GIT_COMPRESSION


def as_git_prints(body: bytes, forward: bytes, reverse: bytes, level: int) -> bytes:
    """`body` ("GIT binary patch\\n" and two blocks) with each block deflated at `level`;
    `forward`/`reverse` are the contents the blocks produce (the new side, the old side)."""
    lines = body.split(b"\n")
    if not lines or lines[0] != b"GIT binary patch":
        return body
    blocks, at = [], 1
    while at < len(lines) and lines[at]:
        kind, _, size = lines[at].partition(b" ")
        end = lines.index(b"", at + 1)
        raw = zlib.decompress(b"".join(_decode_line(line) for line in lines[at + 1 : end]))
        blocks.append((kind, int(size), raw))
        at = end + 1
    if len(blocks) != 2:
        return body
    out = [b"GIT binary patch\n"]
    for (kind, _, raw), content in zip(blocks, (forward, reverse), strict=True):
        literal = zlib.compress(content, level)
        delta = zlib.compress(raw, level) if kind == b"delta" else None
        if delta is not None and len(delta) < len(literal):
            out.append(b"delta %d\n" % len(raw) + _encode(delta) + b"\n")
        else:
            out.append(b"literal %d\n" % len(content) + _encode(literal) + b"\n")
    return b"".join(out) + b"\n".join(lines[at + 1 :])


def _decode_line(line: bytes) -> bytes:
    count = line[0] - (ord("A") - 1) if line[0] <= ord("Z") else line[0] - (ord("a") - 27)
    return base64.b85decode(line[1:])[:count]


def _encode(data: bytes) -> bytes:
    out = []
    for start in range(0, len(data), _LINE):
        chunk = data[start : start + _LINE]
        n = len(chunk)
        prefix = bytes([ord("A") + n - 1 if n <= 26 else ord("a") + n - 27])
        out.append(prefix + base64.b85encode(chunk, pad=True) + b"\n")
    return b"".join(out)
