"""Command line: run the daemon, check a config, query a repository, run the dev relay."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hostd import SEMVER
from hostd.config import Config, ConfigError, load_config
from hostd.logs import setup_logging

EXIT_CONFIG = 2


def _config_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="YAML config file (default: $HOSTD_CONFIG)")
    parser.add_argument("--base-dir", help="override base_dir")
    parser.add_argument("--listen", help="override api.listen (host:port)")


def _query_args(parser: argparse.ArgumentParser, strategy: bool = False) -> None:
    parser.add_argument("path", help="folder inside base_dir")
    parser.add_argument("--base", dest="base_ref", help="base ref (baseRef)")
    parser.add_argument("--base-sha", help="base commit (baseSha)")
    if strategy:
        parser.add_argument("--strategy", help="pr, rebase-ff or auto")


def _command_args(sub: Any) -> None:
    cleanup = sub.add_parser("cleanup", help="remove a worktree as workspace.cleanup does")
    _config_args(cleanup)
    cleanup.add_argument("path", help="the linked worktree")
    cleanup.add_argument("--force", action="store_true", help="snapshot unsaved work, then remove")
    cleanup.add_argument("--reason", help="why (required with --force)")
    merge = sub.add_parser("merge", help="land a worktree's branch as workspace.merge does")
    _config_args(merge)
    merge.add_argument("path", help="the linked worktree")
    merge.add_argument("--base", dest="base_ref", help="base branch (default: the default branch)")
    merge.add_argument("--strategy", default="auto", choices=("auto", "rebase-ff", "pr"))
    merge.add_argument(
        "--keep-branch", action="store_true", help="keep the worktree; advance its branch"
    )
    reconcile = sub.add_parser("reconcile", help="remove a worktree if all its work landed")
    _config_args(reconcile)
    reconcile.add_argument("path", help="the linked worktree")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hostd", description=__doc__)
    parser.add_argument("--version", action="version", version=SEMVER)
    sub = parser.add_subparsers(dest="command", required=True)
    _config_args(sub.add_parser("run", help="run the daemon"))
    _config_args(sub.add_parser("check", help="validate the config and print it"))
    for name, helptext in (
        ("probe", "is PATH in a repository (as /api/workspace/probe)"),
        ("state", "git state of a worktree (as /api/workspace/state)"),
        ("diff", "diff against a base (as /api/workspace/diff)"),
        ("preview", "merge preview (as /api/workspace/merge-preview)"),
    ):
        query = sub.add_parser(name, help=helptext)
        _config_args(query)
        if name == "probe":
            query.add_argument("path", help="folder inside base_dir")
        else:
            _query_args(query, strategy=name == "preview")
        if name == "diff":
            query.add_argument("--no-patch", action="store_true", help="leave the patch out")
    _command_args(sub)
    relay = sub.add_parser("dev-relay", help="run the development relay (not for production)")
    relay.add_argument("--listen", default="127.0.0.1:4850", help="host:port")
    relay.add_argument("--db", default=":memory:", help="SQLite file (default: in memory)")
    relay.add_argument("--token", default=None, help="shared token the relay requires")
    demo = sub.add_parser("demo", help="try hostd: dev relay + hostd on a sandbox repository")
    demo.add_argument("--dir", type=Path, help="sandbox folder (new or empty; default: a temp dir)")
    demo.add_argument("--relay-listen", default="127.0.0.1:4850", help="dev relay host:port")
    demo.add_argument("--api-listen", default="127.0.0.1:4860", help="hostd API host:port")
    return parser


def _load(args: argparse.Namespace) -> Config:
    overrides: dict[str, Any] = {}
    if getattr(args, "base_dir", None):
        overrides["base_dir"] = args.base_dir
    if getattr(args, "listen", None):
        overrides["api.listen"] = args.listen
    return load_config(args.config, overrides=overrides)


def _print_json(body: Any) -> None:
    json.dump(body, sys.stdout, indent=2, ensure_ascii=False)
    sys.stdout.write("\n")


def _query(args: argparse.Namespace, config: Config) -> int:
    from hostd import queries
    from hostd.git.errors import PathError
    from hostd.git.paths import check_request_path

    try:
        path = check_request_path(args.path, config.base_dir)
    except PathError as exc:
        print(f"hostd: {exc}", file=sys.stderr)
        return 1
    base = config.base_dir
    if args.command == "probe":
        body = queries.probe_body(path, base)
    elif args.command == "state":
        body = queries.state_body(path, base, args.base_ref, args.base_sha)
    elif args.command == "diff":
        body = queries.diff_body(path, base, args.base_ref, args.base_sha, not args.no_patch)
    else:
        body = queries.preview_body(path, base, args.base_ref, args.base_sha, args.strategy)
    _print_json(body)
    return 0


def _local_command(args: argparse.Namespace, config: Config) -> int:
    """Run a workspace command's handler here, under the daemon's locks; exit 1 on `error`."""
    from hostd.commands.cleanup import CleanupHandler
    from hostd.commands.local import run_locally
    from hostd.commands.reconcile import ReconcileHandler

    params: dict[str, Any] = {"worktreePath": str(Path(args.path).absolute())}
    handler: Any = ReconcileHandler()
    if args.command == "merge":
        from hostd.commands.merge import MergeHandler

        handler = MergeHandler()
        params.update(strategy=args.strategy, deleteBranch=not args.keep_branch)
        if args.base_ref:
            params["baseRef"] = args.base_ref
    if args.command == "cleanup":
        handler = CleanupHandler()
        if args.force:
            params.update(force=True, reason=args.reason or "")
    result = asyncio.run(run_locally(handler, params, config))
    _print_json(result)
    return 1 if result.get("error") else 0


LOCAL_COMMANDS = {"cleanup", "merge", "reconcile"}


def _check(config: Config) -> int:
    from hostd.api.handlers import version_body

    _print_json({"config": config.redacted(), "version": version_body()})
    return 0


def _dev_relay(args: argparse.Namespace) -> int:
    from hostd.config import split_listen
    from hostd.devrelay import run

    setup_logging("info", "text")
    host, port = split_listen(args.listen)
    run(host=host, port=port, db_path=args.db, token=args.token)
    return 0


def _demo(args: argparse.Namespace) -> int:
    from hostd.demo import run_demo

    setup_logging("warning", "text")
    return asyncio.run(run_demo(args.dir, args.relay_listen, args.api_listen))


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "dev-relay":
        return _dev_relay(args)
    if args.command == "demo":
        return _demo(args)
    try:
        config = _load(args)
    except ConfigError as exc:
        print(f"hostd: config error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    if args.command == "check":
        return _check(config)
    if args.command == "run":
        from hostd.daemon import serve

        setup_logging(config.log.level, config.log.format)
        return asyncio.run(serve(config))
    if args.command in LOCAL_COMMANDS:
        return _local_command(args, config)
    return _query(args, config)


if __name__ == "__main__":
    sys.exit(main())
