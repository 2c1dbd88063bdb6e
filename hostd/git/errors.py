"""Exceptions raised by the git layer."""


class PathError(ValueError):
    """A requested path breaks the path rules (outside base_dir, missing, malformed)."""


class GitError(Exception):
    """A repository problem reported to callers as data (`{"error": ...}`), not as a crash."""


class RefusedError(Exception):
    """A destructive command refuses to act; nothing was touched. The message is the error."""
