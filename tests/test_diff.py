"""workspace_diff against git: numstat line by line, the patch byte for byte as `git diff --binary`
prints it, and applied with `git apply`."""

from __future__ import annotations

import base64
import os
import subprocess
import tempfile
import zlib
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hostd.git.diff import workspace_diff
from hostd.git.discover import open_workspace
from hostd.git.errors import GitError
from hostd.git.quoting import pprint_rename, quote_path
from tests.gitrepo import Repo, git, git_rc, init_repo


def diff_of(repo: Repo, base_dir: Path, base: str | None = None, **kw: Any) -> dict[str, Any]:
    return workspace_diff(open_workspace(str(repo.path), str(base_dir)), base, None, **kw)


def numstat(body: dict[str, Any]) -> list[str]:
    return [
        f"-\t-\t{f['path']}" if f["binary"] else f"{f['additions']}\t{f['deletions']}\t{f['path']}"
        for f in body["files"]
    ]


def git_numstat(repo: Repo, *revs: str) -> list[str]:
    return repo.git("diff", "--numstat", "-M", *revs).splitlines()


def assert_patch_is_gits(repo: Repo, body: dict[str, Any], *revs: str) -> None:
    """The patch is what `git diff --binary` prints (non-UTF-8 bytes as U+FFFD, as JSON)."""
    proc = subprocess.run(
        ["git", "diff", "--binary", "-M", *revs], cwd=repo.path, capture_output=True, check=True
    )
    ours, theirs = body.get("patch", ""), proc.stdout.decode("utf-8", "replace")
    if ours != theirs:
        assert _without_refused_deltas(repo, ours, theirs) == theirs


def _without_refused_deltas(repo: Repo, ours: str, theirs: str) -> str:
    """`ours` with each `literal` block that git prints as a `delta` replaced by git's block,
    once the literal is checked to hold the blob its side names. libgit2 computes a delta only
    up to the size of its own compressed literal, which is smaller than git's (git deflates at
    zlib's fastest level), so for tiny, very compressible files git may pick a delta libgit2
    never made; both patches apply the same."""
    mine, gits = ours.split("\n"), theirs.split("\n")
    out: list[str] = []
    i = j = 0
    sides: list[str] = []  # the blob ids the next blocks produce: the new side, then the old
    while i < len(mine) and j < len(gits):
        if mine[i].startswith("index ") and mine[i] == gits[j]:
            sides = mine[i].split()[1].split("..")[::-1]
        if mine[i].startswith(("literal ", "delta ")) and sides:
            side = sides.pop(0)
            if mine[i].startswith("literal ") and gits[j].startswith("delta "):
                end_mine, end_gits = mine.index("", i), gits.index("", j)
                content = _inflate(mine[i + 1 : end_mine])
                assert len(content) == int(mine[i].split()[1])
                blob = git(repo.path, "hash-object", "--stdin", input=content).strip()
                assert blob.startswith(side), (blob, side)
                out += gits[j:end_gits]
                i, j = end_mine, end_gits
                continue
        out.append(mine[i])
        i, j = i + 1, j + 1
    return "\n".join(out + mine[i:])


def _inflate(lines: list[str]) -> bytes:
    data = b""
    for line in lines:
        count = ord(line[0]) - (ord("A") - 1) if line[0] <= "Z" else ord(line[0]) - (ord("a") - 27)
        data += base64.b85decode(line[1:])[:count]
    return zlib.decompress(data)


def merge_base(repo: Repo, base: str) -> str:
    return repo.git("merge-base", base, "HEAD").strip()


def git_env(repo: Repo, index: Path, *args: str, input: bytes | None = None) -> str:
    env = {**os.environ, "GIT_INDEX_FILE": str(index)}
    proc = subprocess.run(
        ["git", *args], cwd=repo.path, env=env, input=input, capture_output=True, check=False
    )
    assert proc.returncode == 0, f"git {' '.join(args)}: {proc.stderr.decode(errors='replace')}"
    return proc.stdout.decode()


def assert_applies(repo: Repo, patch: str, onto: str, expect_tree: str | None = None) -> None:
    """`git apply --check --cached` on a throwaway index read from `onto`; optionally the result."""
    with tempfile.TemporaryDirectory() as tmp:
        index = Path(tmp) / "index"
        git_env(repo, index, "read-tree", onto)
        git_env(repo, index, "apply", "--check", "--cached", input=patch.encode())
        if expect_tree is not None:
            git_env(repo, index, "apply", "--cached", input=patch.encode())
            assert git_env(repo, index, "write-tree").strip() == expect_tree


def assert_matches_git(repo: Repo, base_dir: Path, base: str) -> dict[str, Any]:
    before = repo.state_fingerprint()
    body = diff_of(repo, base_dir, base)
    assert repo.state_fingerprint() == before
    mb = merge_base(repo, base)
    assert numstat(body) == git_numstat(repo, mb, "HEAD")
    assert "truncated" not in body
    assert_patch_is_gits(repo, body, mb, "HEAD")
    if body["files"]:
        assert_applies(repo, body["patch"], mb, repo.git("rev-parse", "HEAD^{tree}").strip())
    else:
        assert "patch" not in body
    return body


ODD_NAMES = [
    "with space.txt",
    "ünïcødé.txt",
    'quo"te.txt',
    "tab\tname.txt",
    "new\nline.txt",
    "back\\slash.txt",
    "bell\x07.txt",
    "del\x7f.txt",
    os.fsdecode(b"latin\xe9.txt"),
]


def move(repo: Repo, old: str, new: str) -> None:
    (repo.path / new).parent.mkdir(parents=True, exist_ok=True)
    repo.git("mv", old, new)


def lines(n: int, tag: str = "") -> str:
    return "".join(f"line {i} {tag}\n" for i in range(n))


def test_shapes_against_a_base_in_a_linked_worktree(repo: Repo, base_dir: Path) -> None:
    start: dict[str, str | bytes] = {
        "mod.txt": lines(30),
        "gone.txt": lines(5),
        "same_dir_old.txt": lines(20, "same"),
        "src/moved.py": lines(25, "moved"),
        "src/edit_then_move.py": lines(40, "edited"),
        "bin/blob.bin": b"\0binary\1" * 200,
        "bin/renamed.bin": b"\0\1\2\3" * 300,
        "bin/gone.bin": b"\0gone",
        "late_nul.txt": "x" * 9000 + "\0tail\n",
        "mode.sh": "echo hi\n",
        "empty": "",
        "link_to_file": lines(3, "link"),
        **{name: lines(4, "odd") for name in ODD_NAMES},
    }
    repo.commit("base", start)
    work = repo.worktree(base_dir / "wt", "agent/work")
    work.write("mod.txt", lines(30).replace("line 7 \n", "seven\n") + "appended\n")
    (work.path / "gone.txt").unlink()
    move(work, "same_dir_old.txt", "same_dir_new.txt")
    move(work, "src/moved.py", "lib/moved.py")
    move(work, "src/edit_then_move.py", "lib/edit_then_move.py")
    work.write(
        "lib/edit_then_move.py", lines(40, "edited").replace("line 3 edited", "changed") + "x\n"
    )
    work.write("added.txt", "fresh\n")
    work.write("added_empty", "")
    work.write("bin/blob.bin", b"\0binary\2" * 200)
    work.write("bin/new.bin", b"\0\0new")
    move(work, "bin/renamed.bin", "bin/renamed2.bin")
    (work.path / "bin/gone.bin").unlink()
    work.write("late_nul.txt", "y" + "x" * 8999 + "\0tail\n")
    (work.path / "mode.sh").chmod(0o755)
    move(work, "empty", "empty_renamed")
    (work.path / "link_to_file").unlink()
    (work.path / "link_to_file").symlink_to("mod.txt")
    for name in ODD_NAMES:
        work.write(name, lines(4, "odd") + "more\n")
    move(work, ODD_NAMES[0], "renamed with space.txt")
    work.commit("work")
    work.write("dirty.txt", "untracked\n")

    body = assert_matches_git(work, base_dir, "main")
    assert body["baseRef"] == "main"
    assert body["ahead"] == 1
    assert body["dirtyCount"] == len(work.git("status", "--porcelain").splitlines()) == 1
    by_new = {f["newPath"]: f for f in body["files"]}
    assert "dirty.txt" not in by_new
    assert by_new["lib/edit_then_move.py"]["oldPath"] == "src/edit_then_move.py"
    assert by_new["lib/edit_then_move.py"]["path"] == "{src => lib}/edit_then_move.py"
    assert by_new["bin/renamed2.bin"] == {
        "path": "bin/{renamed.bin => renamed2.bin}",
        "binary": True,
        "oldPath": "bin/renamed.bin",
        "newPath": "bin/renamed2.bin",
    }
    assert by_new["tab\tname.txt"]["path"] == '"tab\\tname.txt"'
    assert by_new["mod.txt"] == {
        "path": "mod.txt",
        "binary": False,
        "additions": 2,
        "deletions": 1,
        "newPath": "mod.txt",
    }
    assert "oldPath" not in by_new["gone.txt"]
    assert "GIT binary patch" in body["patch"]


@pytest.mark.parametrize("committed", [True, False])
def test_attributes_and_headers_print_like_git(repo: Repo, base_dir: Path, committed: bool) -> None:
    """`binary` and `-diff` files print as binary patches; paths with a space end their
    `---`/`+++` lines with a TAB; an empty new file has no `---`/`+++` lines."""
    repo.commit(
        "base",
        {
            ".gitattributes": "*.dat binary\nnodiff.txt -diff\ndiff-set.txt diff\n",
            "old.dat": "text marked binary\n",
            "nodiff.txt": lines(4),
            "diff-set.txt": lines(3),
            "to delete.txt": lines(3),
            "sp dir/ü edit.txt": lines(5),
            "sp dir/move me.txt": lines(12, "move"),
            "emptied.txt": lines(2),
        },
    )
    repo.git("checkout", "-q", "-b", "work")
    repo.write("old.dat", "text marked binary, edited\n")
    repo.write("new.dat", "new text marked binary\n")
    repo.write("nodiff.txt", lines(5))
    repo.write("diff-set.txt", lines(4))
    (repo.path / "to delete.txt").unlink()
    repo.write("sp dir/ü edit.txt", lines(6))
    move(repo, "sp dir/move me.txt", "moved here.txt")
    repo.write("moved here.txt", lines(12, "move") + "more\n")
    repo.write("empty new.txt", "")
    repo.write("empty.txt", "")
    repo.write("emptied.txt", "")
    repo.git("add", "-A")
    if committed:
        repo.commit("work")
        body = assert_matches_git(repo, base_dir, "main")
    else:
        body = diff_of(repo, base_dir)
        assert_patch_is_gits(repo, body, "HEAD")
    binary = {f["newPath"] for f in body["files"] if f["binary"]}
    assert binary == {"old.dat", "new.dat", "nodiff.txt"}
    assert body["patch"].count("GIT binary patch") == 3


RENAMES = [
    ("a.txt", "b.txt", "a.txt => b.txt"),
    ("dir/sub/f.txt", "dir/other/f.txt", "dir/{sub => other}/f.txt"),
    ("one/f.txt", "two/f.txt", "{one => two}/f.txt"),
    ("a/f.txt", "a/sub/f.txt", "a/{ => sub}/f.txt"),
    ("x/deep/f.txt", "x/f.txt", "x/{deep => }/f.txt"),
    ("top.txt", "nested/top.txt", "top.txt => nested/top.txt"),
    ("p/abc.txt", "p/abd.txt", "p/{abc.txt => abd.txt}"),
    ("tab\there.txt", "plain.txt", '"tab\\there.txt" => plain.txt'),
    ("plain2.txt", "ü/plain2.txt", 'plain2.txt => "\\303\\274/plain2.txt"'),
]


def test_rename_paths_print_like_git(repo: Repo, base_dir: Path) -> None:
    repo.commit("base", {old: lines(12, old) for old, _, _ in RENAMES})
    repo.git("checkout", "-q", "-b", "work")
    for old, new, _ in RENAMES:
        move(repo, old, new)
    repo.commit("renames")
    body = assert_matches_git(repo, base_dir, "main")
    assert sorted(f["path"] for f in body["files"]) == sorted(p for _, _, p in RENAMES)
    assert {f["oldPath"]: f["newPath"] for f in body["files"]} == {o: n for o, n, _ in RENAMES}
    assert "similarity index 100%" in body["patch"]


def test_rename_pairing_follows_git(repo: Repo, base_dir: Path) -> None:
    """Same-name sources win (among identical blobs, and over a closer match); CR of CRLF is
    not counted."""
    text = lines(20, "shared")
    repo.commit(
        "base",
        {
            "x/a.txt": "identical\n" * 5,
            "y/b.txt": "identical\n" * 5,
            "a/f.txt": text.replace("line 1 ", "one ").replace("line 2 ", "two "),
            "b/g.txt": text.replace("line 1 ", "one "),
            "dos.txt": lines(20, "dos").replace("\n", "\r\n"),
        },
    )
    repo.git("checkout", "-q", "-b", "work")
    for old in ("x/a.txt", "y/b.txt", "a/f.txt", "b/g.txt", "dos.txt"):
        (repo.path / old).unlink()
    repo.commit(
        "moves", {"z/b.txt": "identical\n" * 5, "c/f.txt": text, "unix.txt": lines(20, "dos")}
    )
    body = assert_matches_git(repo, base_dir, "main")
    assert [f["path"] for f in body["files"]] == [
        "b/g.txt",
        "{a => c}/f.txt",
        "dos.txt => unix.txt",
        "x/a.txt",
        "{y => z}/b.txt",
    ]


def test_rename_limit_is_honoured(repo: Repo, base_dir: Path) -> None:
    repo.git("config", "diff.renameLimit", "1")
    repo.commit("base", {"a.txt": lines(20, "a"), "b.txt": lines(20, "b")})
    repo.git("checkout", "-q", "-b", "work")
    repo.git("rm", "-q", "a.txt", "b.txt")
    repo.commit("moves", {"c.txt": lines(20, "a") + "c\n", "d.txt": lines(20, "b") + "d\n"})
    body = assert_matches_git(repo, base_dir, "main")
    assert not any("=>" in f["path"] for f in body["files"])


@pytest.mark.parametrize(
    ("old", "new", "printed"),
    [(o.encode(), n.encode(), p) for o, n, p in RENAMES]
    + [(b"a/b/c", b"a/c", "a/{b => }/c"), (b"same", b"same", "same => same")],
)
def test_pprint_rename(old: bytes, new: bytes, printed: str) -> None:
    assert pprint_rename(old, new) == printed


def test_quote_path() -> None:
    assert quote_path(b"plain/x y.txt") == "plain/x y.txt"
    assert quote_path(b'a\x01\x07\x08\t\n\x0b\x0c\r\x7f"\\\xc3\xbc') == (
        '"a\\001\\a\\b\\t\\n\\v\\f\\r\\177\\"\\\\\\303\\274"'
    )
    assert quote_path(b"\xc3\xbc", quote_fully=False) == "ü"


def test_quote_path_off_follows_git(repo: Repo, base_dir: Path) -> None:
    repo.git("config", "core.quotePath", "false")
    repo.commit("base", {"ü.txt": "a\n"})
    repo.git("checkout", "-q", "-b", "work")
    repo.commit("edit", {"ü.txt": "b\n", "t\tab": "c\n"})
    body = assert_matches_git(repo, base_dir, "main")
    assert [f["path"] for f in body["files"]] == ['"t\\tab"', "ü.txt"]


def test_merge_in_branch_history(repo: Repo, base_dir: Path) -> None:
    repo.commit("base", {"shared.txt": lines(10), "main.txt": lines(3)})
    repo.git("checkout", "-q", "-b", "work")
    repo.commit("work 1", {"work.txt": "w1\n"})
    repo.git("checkout", "-q", "main")
    repo.commit("main moves on", {"main.txt": lines(5), "main2.txt": "m\n"})
    repo.git("checkout", "-q", "work")
    repo.git("merge", "-q", "--no-edit", "main")
    repo.commit("work 2", {"shared.txt": lines(10) + "w2\n"})
    repo.git("checkout", "-q", "main")
    repo.commit("main again", {"main.txt": "rewritten\n"})
    repo.git("checkout", "-q", "work")
    body = assert_matches_git(repo, base_dir, "main")
    assert [f["path"] for f in body["files"]] == ["shared.txt", "work.txt"]
    assert body["ahead"] == int(repo.git("rev-list", "--count", "main..HEAD"))
    assert body["ahead"] == 3


def test_uncommitted_changes_without_base(repo: Repo, base_dir: Path) -> None:
    repo.commit(
        "base",
        {
            "staged.txt": lines(10),
            "unstaged.txt": lines(10),
            "both.txt": lines(10),
            "to_rename.txt": lines(20, "r"),
            "to_delete.txt": lines(3),
            "deleted_on_disk.txt": lines(3),
            "img.bin": b"\0img" * 50,
            "run.sh": "echo\n",
            "becomes_link.txt": lines(3),
        },
    )
    repo.write("becomes_link.txt", lines(4))
    repo.git("add", "becomes_link.txt")
    (repo.path / "becomes_link.txt").unlink()
    (repo.path / "becomes_link.txt").symlink_to("staged.txt")
    repo.write("staged.txt", lines(10) + "staged\n")
    repo.git("add", "staged.txt")
    repo.write("unstaged.txt", "first\n" + lines(10))
    repo.write("both.txt", lines(10) + "staged\n")
    repo.git("add", "both.txt")
    repo.write("both.txt", lines(10) + "staged\nand not\n")
    move(repo, "to_rename.txt", "renamed.txt")
    repo.write("renamed.txt", lines(20, "r") + "edited after the move\n")
    repo.git("rm", "-q", "to_delete.txt")
    (repo.path / "deleted_on_disk.txt").unlink()
    repo.write("new_staged.txt", "new\n")
    repo.git("add", "new_staged.txt")
    repo.write("new_staged.txt", "new\nchanged\n")
    repo.write("staged_then_removed.txt", "gone\n")
    repo.git("add", "staged_then_removed.txt")
    (repo.path / "staged_then_removed.txt").unlink()
    repo.write("img.bin", b"\0img" * 51)
    (repo.path / "run.sh").chmod(0o755)
    repo.write("untracked.txt", "never shown\n")
    before = repo.state_fingerprint()
    index_before = (repo.path / ".git" / "index").read_bytes()

    body = diff_of(repo, base_dir)

    assert repo.state_fingerprint() == before
    assert (repo.path / ".git" / "index").read_bytes() == index_before
    assert numstat(body) == git_numstat(repo, "HEAD")
    assert_patch_is_gits(repo, body, "HEAD")
    assert "baseRef" not in body and "ahead" not in body and "dirtyCount" not in body
    assert "untracked.txt" not in {f["newPath"] for f in body["files"]}
    assert any(f["path"] == "to_rename.txt => renamed.txt" for f in body["files"])
    with tempfile.TemporaryDirectory() as tmp:
        index = Path(tmp) / "index"
        git_env(repo, index, "read-tree", "HEAD")
        git_env(repo, index, "apply", "--cached", input=body["patch"].encode())
        git_env(repo, index, "diff", "--quiet")  # the index now holds the worktree's content


def test_unmerged_path_compares_head_with_the_worktree(repo: Repo, base_dir: Path) -> None:
    repo.commit("base", {"c.txt": "base\n", "link": "target\n"})
    repo.git("checkout", "-q", "-b", "work")
    repo.commit("work side", {"c.txt": "work\n"})
    repo.git("checkout", "-q", "main")
    repo.commit("main side", {"c.txt": "main\n"})
    assert git_rc(repo.path, "merge", "-q", "work")[0] != 0
    assert "UU c.txt" in repo.git("status", "--porcelain")
    (repo.path / "link").unlink()
    (repo.path / "link").symlink_to("c.txt")
    body = diff_of(repo, base_dir)
    assert numstat(body) == git_numstat(repo, "HEAD") == ["4\t0\tc.txt", "1\t1\tlink"]
    assert_applies(repo, body["patch"], "HEAD")


def test_truncated_patch_is_a_prefix_and_files_stay_complete(repo: Repo, base_dir: Path) -> None:
    repo.commit("base", {f"f{i:02}.txt": lines(200, str(i)) for i in range(30)})
    repo.git("checkout", "-q", "-b", "work")
    repo.commit("rewrite", {f"f{i:02}.txt": lines(200, f"new {i}") for i in range(30)})
    full = diff_of(repo, base_dir, "main", patch_cap=10_000_000)
    assert "truncated" not in full
    cap = len(full["patch"]) // 3
    body = diff_of(repo, base_dir, "main", patch_cap=cap)
    assert body["truncated"] is True
    assert len(body["patch"]) == cap
    assert full["patch"].startswith(body["patch"])
    assert body["files"] == full["files"]
    assert numstat(body) == git_numstat(repo, "main", "HEAD")
    exact = diff_of(repo, base_dir, "main", patch_cap=len(full["patch"]))
    assert exact["patch"] == full["patch"] and "truncated" not in exact


def test_default_cap_is_200k(repo: Repo, base_dir: Path) -> None:
    repo.commit("base", {"big.txt": lines(10)})
    repo.git("checkout", "-q", "-b", "work")
    repo.commit("grow", {"big.txt": lines(30_000, "x" * 10)})
    body = diff_of(repo, base_dir, "main")
    assert body["truncated"] is True
    assert len(body["patch"]) == 200_000
    assert numstat(body) == git_numstat(repo, "main", "HEAD")


def test_patch_can_be_left_out(repo: Repo, base_dir: Path) -> None:
    repo.git("checkout", "-q", "-b", "work")
    repo.commit("edit", {"README.md": "changed\n", "b.bin": b"\0x"})
    body = diff_of(repo, base_dir, "main", include_patch=False)
    assert "patch" not in body and "truncated" not in body
    assert numstat(body) == git_numstat(repo, "main", "HEAD") == ["1\t1\tREADME.md", "-\t-\tb.bin"]


def test_nothing_to_show(repo: Repo, base_dir: Path) -> None:
    repo.git("checkout", "-q", "-b", "work")
    assert diff_of(repo, base_dir, "main") == {
        "files": [],
        "baseRef": "main",
        "ahead": 0,
        "dirtyCount": 0,
    }
    assert diff_of(repo, base_dir) == {"files": []}


def test_unrelated_histories(repo: Repo, base_dir: Path) -> None:
    repo.git("checkout", "-q", "--orphan", "other")
    repo.commit("unrelated", {"other.txt": "o\n"})
    before = repo.state_fingerprint()
    body = diff_of(repo, base_dir, "main")
    assert body == {"files": [], "baseRef": "main", "error": "no merge base"}
    assert repo.state_fingerprint() == before


def test_unborn_head(base_dir: Path) -> None:
    repo = init_repo(base_dir / "empty", initial=False)
    repo.write("staged.txt", "s\n")
    repo.git("add", "staged.txt")
    assert diff_of(repo, base_dir) == {"files": [], "error": "unborn HEAD"}
    assert diff_of(repo, base_dir, "main") == {"files": [], "error": "unborn HEAD"}


def test_base_starting_with_dash_never_resolves(repo: Repo, base_dir: Path) -> None:
    (repo.path / ".git" / "refs" / "heads" / "-dash").write_text(repo.head() + "\n")
    repo.commit("committed", {"README.md": "committed\n"})
    repo.write("README.md", "uncommitted\n")
    target = base_dir / "written-by-git"
    for base in ("-dash", f"--output={target}", "-p"):
        body = diff_of(repo, base_dir, base)
        assert "baseRef" not in body
        assert numstat(body) == git_numstat(repo, "HEAD") == ["1\t1\tREADME.md"]
    assert not target.exists()


def test_repository_problems_raise_git_error(repo: Repo, base_dir: Path) -> None:
    repo.git("checkout", "-q", "-b", "work")
    repo.commit("edit", {"README.md": "changed\n"})
    blob = repo.git("rev-parse", "HEAD:README.md").strip()
    obj = repo.path / ".git" / "objects" / blob[:2] / blob[2:]
    obj.unlink()
    with pytest.raises(GitError):
        diff_of(repo, base_dir, "main")


# --- random edit sets --------------------------------------------------------------------

NAMES = ["a.txt", "b.txt", "d/c.txt", "d/e/a.txt", "x y.txt", "ü.txt", "d/b.txt", "z.bin"]
LINE = st.sampled_from(
    ["alpha", "beta", "gamma", "", "    return x", "}", "q" * 70, "crlf\r", "nul\0"]
)
CONTENT = st.lists(LINE, max_size=14).map(lambda ls: "".join(f"{x}\n" for x in ls))
ATTRIBUTES = "*.bin binary\nd/e/* -diff\n"
OP = st.sampled_from(["keep", "edit", "delete", "rename", "rename_edit", "chmod", "truncate"])


@st.composite
def edit_sets(draw: st.DrawFn) -> tuple[dict[str, str], list[tuple[str, str, str]], str]:
    names = draw(st.lists(st.sampled_from(NAMES), min_size=1, max_size=6, unique=True))
    files = {name: draw(CONTENT) for name in names}
    ops = [(name, draw(OP), draw(st.sampled_from([*NAMES, "new/" + name]))) for name in names]
    mode = draw(st.sampled_from(["commit", "staged", "worktree"]))
    return files, ops, mode


def apply_ops(repo: Repo, files: dict[str, str], ops: list[tuple[str, str, str]]) -> None:
    for name, op, target in ops:
        path = repo.path / name
        text = files[name]
        edited = "".join(
            line if i % 3 else "edited\n" for i, line in enumerate(text.splitlines(True))
        )
        if op == "edit":
            path.write_text(edited + "tail")
        elif op == "delete":
            path.unlink()
        elif op == "truncate":
            path.write_text("")
        elif op == "chmod":
            path.chmod(0o755)
        elif op in ("rename", "rename_edit") and not (repo.path / target).exists():
            path.unlink()
            repo.write(target, edited if op == "rename_edit" else text)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(edit_sets())
def test_random_edit_sets_match_git(plan: tuple[dict[str, str], list[Any], str]) -> None:
    files, ops, mode = plan
    with tempfile.TemporaryDirectory() as tmp:
        base_dir = Path(tmp).resolve()
        repo = init_repo(base_dir / "repo")
        repo.commit("base", {**files, ".gitattributes": ATTRIBUTES})
        repo.git("checkout", "-q", "-b", "work")
        apply_ops(repo, files, ops)
        if mode == "commit":
            repo.commit("edits", allow_empty=True)
            assert_matches_git(repo, base_dir, "main")
            return
        if mode == "staged":
            repo.git("add", "-A")
        body = diff_of(repo, base_dir)
        assert numstat(body) == git_numstat(repo, "HEAD")
        assert_patch_is_gits(repo, body, "HEAD")
        if body["files"]:
            assert_applies(repo, body["patch"], "HEAD")


def test_a_delta_libgit2_refuses_is_printed_literally(repo: Repo, base_dir: Path) -> None:
    """A tiny, very compressible binary file: git's reverse block is a delta that libgit2 never
    computes (it is longer than libgit2's compressed literal); hostd prints the literal."""
    q = "q" * 70
    lines = ["nul\0", "    return x", q, "beta", q, "", q, q, q, "nul\0"]
    text = "".join(f"{line}\n" for line in lines)
    repo.commit("base", {"c.bin": text})
    repo.git("checkout", "-q", "-b", "work")
    repo.commit(
        "edit",
        {
            "c.bin": "".join(
                x if i % 3 else "edited\n" for i, x in enumerate(text.splitlines(True))
            )
            + "tail"
        },
    )
    body = assert_matches_git(repo, base_dir, "main")
    mb = merge_base(repo, "main")
    gits = repo.git("diff", "--binary", "-M", mb, "HEAD")
    assert body["patch"] != gits and "\nliteral " in body["patch"] and "\ndelta " in gits
