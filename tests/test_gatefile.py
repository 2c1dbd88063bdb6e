"""Reading `.agent-relay/land-gates.json` from a commit, and the gateLevel params."""

from __future__ import annotations

import json
import os

import pygit2
import pytest

from hostd.gates.levels import GateLevel, GateParamError
from hostd.git.gatefile import CONFIG_GATE, GATE_FILE, Gate, read_declaration
from tests.gitrepo import Repo


def declared(repo: Repo, content: str | bytes) -> tuple[pygit2.Repository, str]:
    sha = repo.commit("gates", {GATE_FILE: content})
    return pygit2.Repository(str(repo.path)), sha


def test_array_and_object_shapes_read_the_same_gates(repo: Repo) -> None:
    gates = [
        {"name": "tests", "command": "make test", "timeoutMs": 5000, "extra": True},
        {"name": "lint", "command": "ruff check .", "cwd": "src/./pkg", "optional": True},
    ]
    expected = (
        Gate("tests", "make test", "", 5000, False),
        Gate("lint", "ruff check .", "src/pkg", None, True),
    )
    pg, array_sha = declared(repo, json.dumps(gates))
    _, object_sha = declared(repo, json.dumps({"version": 2, "gates": gates}))
    for sha in (array_sha, object_sha):
        declaration = read_declaration(pg, sha)
        assert declaration.error is None
        assert declaration.gates == expected
        assert declaration.names == ["tests", "lint"]


def test_no_file_means_no_gates(repo: Repo) -> None:
    declaration = read_declaration(pygit2.Repository(str(repo.path)), repo.head())
    assert declaration.gates == () and declaration.error is None and declaration.names == []


def test_the_file_is_read_from_the_commit_not_the_worktree(repo: Repo) -> None:
    pg, sha = declared(repo, '[{"name": "strict", "command": "exit 1"}]')
    repo.write(GATE_FILE, '[{"name": "lenient", "command": "exit 0"}]')
    assert read_declaration(pg, sha).names == ["strict"]


MALFORMED = [
    ("", "empty file"),
    ("  \n", "empty file"),
    ("{", "not JSON"),
    (b"\xff\xfe[]", "not UTF-8"),
    ("3", "expected an array of gates, got a number"),
    ('{"checks": []}', "`gates` array"),
    ('{"gates": {"name": "a"}}', "got an object"),
    ("[1]", "gates[0]: expected an object"),
    ('[{"command": "true"}]', "gates[0].name"),
    ('[{"name": "a", "command": ""}]', "gates[0].command"),
    ('[{"name": "a", "command": "true", "timeoutMs": "5"}]', "gates[0].timeoutMs"),
    ('[{"name": "a", "command": "true", "timeoutMs": 0}]', "gates[0].timeoutMs"),
    ('[{"name": "a", "command": "true", "timeoutMs": true}]', "gates[0].timeoutMs"),
    ('[{"name": "a", "command": "true", "optional": "yes"}]', "gates[0].optional"),
    ('[{"name": "a", "command": "true", "cwd": "../elsewhere"}]', "gates[0].cwd"),
    ('[{"name": "a", "command": "true", "cwd": "x/../../y"}]', "gates[0].cwd"),
    ('[{"name": "a", "command": "true", "cwd": "/etc"}]', "gates[0].cwd"),
    ('[{"name": "a", "command": "true"}, {"name": "b"}]', "gates[1].command"),
]


@pytest.mark.parametrize(("content", "message"), MALFORMED)
def test_a_malformed_file_is_the_failing_config_gate(
    repo: Repo, content: str | bytes, message: str
) -> None:
    pg, sha = declared(repo, content)
    declaration = read_declaration(pg, sha)
    assert declaration.gates == ()
    assert declaration.names == [CONFIG_GATE]
    assert declaration.error is not None
    assert declaration.error.startswith(GATE_FILE + ": ")
    assert message in declaration.error


def test_a_symlink_or_folder_at_the_path_is_malformed(repo: Repo) -> None:
    os.makedirs(repo.path / ".agent-relay")
    os.symlink("/etc/passwd", repo.path / GATE_FILE)
    link_sha = repo.commit("link")
    repo.git("rm", "-q", GATE_FILE)
    sha = repo.commit("folder", {GATE_FILE + "/inner": "x"})
    pg = pygit2.Repository(str(repo.path))
    for commit in (link_sha, sha):
        declaration = read_declaration(pg, commit)
        assert declaration.names == [CONFIG_GATE]
    assert "not a regular file" in (read_declaration(pg, link_sha).error or "")


def test_gate_level_defaults_to_full_and_records_a_weaker_one() -> None:
    full = GateLevel.parse({"gateLevel": None, "gateReason": "ignored at full"})
    assert full.level == "full" and full.skipped() is None
    assert full.declaring_commit("base", "candidate") == "base"
    subset = GateLevel.parse({"gateLevel": "subset", "gateReason": "flaky", "requestedBy": "ann"})
    assert subset.declaring_commit("base", "candidate") == "candidate"
    assert subset.skipped() == {"level": "subset", "reason": "flaky", "by": "ann"}
    none = GateLevel.parse({"gateLevel": "none", "requestedBy": 7})
    assert none.declaring_commit("base", "candidate") is None
    assert none.skipped() == {"level": "none"}


@pytest.mark.parametrize("value", ["None", "FULL", "", 0, True, ["none"]])
def test_an_unknown_gate_level_is_refused(value: object) -> None:
    with pytest.raises(GateParamError, match="gateLevel"):
        GateLevel.parse({"gateLevel": value})
