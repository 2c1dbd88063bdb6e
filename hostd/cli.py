"""Command line: run the daemon, check a config, query a repository, run the dev relay."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hostd import SEMVER
from hostd.config import Config, ConfigError, load_config
from hostd.logs import setup_logging

EXIT_CONFIG = 2
QUERIES = {
    "probe": "is PATH in a repository (as /api/workspace/probe)",
    "state": "git state of a worktree (as /api/workspace/state)",
    "diff": "diff against a base (as /api/workspace/diff)",
    "preview": "merge preview (as /api/workspace/merge-preview)",
}


def _config_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="YAML config file (default: $HOSTD_CONFIG)")
    parser.add_argument("--base-dir", help="override base_dir")
    parser.add_argument("--listen", help="override api.listen (host:port)")


PATH_HELP = "folder (relative to the current directory); default: the current directory"
STRATEGIES = ("auto", "pr", "rebase-ff")


def _query_args(parser: argparse.ArgumentParser, strategy: bool = False) -> None:
    parser.add_argument("path", nargs="?", default=".", help=PATH_HELP)
    parser.add_argument(
        "--base",
        dest="base_ref",
        help="base ref (baseRef); default: the repository's default branch",
    )
    parser.add_argument("--base-sha", help="base commit (baseSha)")
    if strategy:
        parser.add_argument("--strategy", choices=STRATEGIES, default="auto")


def _command_args(sub: Any) -> None:
    cleanup = sub.add_parser("cleanup", help="remove a worktree as workspace.cleanup does")
    _config_args(cleanup)
    cleanup.add_argument("path", help="the linked worktree")
    cleanup.add_argument("--force", action="store_true", help="snapshot unsaved work, then remove")
    cleanup.add_argument("--reason", help="why (required with --force)")
    reconcile = sub.add_parser("reconcile", help="remove a worktree if all its work landed")
    _config_args(reconcile)
    reconcile.add_argument("path", help="the linked worktree")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hostd", description=__doc__)
    parser.add_argument("--version", action="version", version=SEMVER)
    sub = parser.add_subparsers(dest="command", required=True)
    _config_args(sub.add_parser("run", help="run the daemon"))
    _config_args(sub.add_parser("check", help="validate the config and print it"))
    for name, helptext in QUERIES.items():
        query = sub.add_parser(name, help=helptext)
        _config_args(query)
        if name == "probe":
            query.add_argument("path", nargs="?", default=".", help=PATH_HELP)
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


def _load(args: argparse.Namespace, overrides: dict[str, Any] | None = None) -> Config:
    overrides = dict(overrides or {})
    if getattr(args, "base_dir", None):
        overrides["base_dir"] = args.base_dir
    if getattr(args, "listen", None):
        overrides["api.listen"] = args.listen
    return load_config(args.config, overrides=overrides)


def _print_json(body: Any) -> None:
    text = json.dumps(body, indent=2, ensure_ascii=False) + "\n"
    try:
        sys.stdout.write(text)
        sys.stdout.flush()
    except BrokenPipeError:
        # The reader (e.g. `| head`) has gone: nothing more to say, and nothing to flush at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def _serves_defaults(args: argparse.Namespace) -> bool:
    """No config file and no base_dir given: the CLI serves the repository around the path."""
    return not (
        args.config
        or args.base_dir
        or os.environ.get("HOSTD_CONFIG")
        or os.environ.get("HOSTD_BASE_DIR")
    )


def _query(args: argparse.Namespace) -> int:
    from hostd import queries
    from hostd.git.errors import PathError
    from hostd.git.paths import check_request_path

    path = os.path.abspath(args.path)
    overrides = {"base_dir": queries.repository_folder(path)} if _serves_defaults(args) else {}
    try:
        config = _load(args, overrides)
        path = check_request_path(path, config.base_dir)
    except ConfigError as exc:
        print(f"hostd: config error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except PathError as exc:
        print(f"hostd: {exc}", file=sys.stderr)
        return 1
    base = config.base_dir
    base_ref = getattr(args, "base_ref", None)
    if args.command != "probe" and not base_ref and not args.base_sha:
        base_ref = queries.default_base(path, base)
        if base_ref:
            print(f"hostd: comparing with {base_ref} (the default branch)", file=sys.stderr)
    if args.command == "probe":
        body = queries.probe_body(path, base)
    elif args.command == "state":
        body = queries.state_body(path, base, base_ref, args.base_sha)
    elif args.command == "diff":
        body = queries.diff_body(path, base, base_ref, args.base_sha, not args.no_patch)
    else:
        body = queries.preview_body(path, base, base_ref, args.base_sha, args.strategy)
    _print_json(body)
    return 1 if "error" in body else 0


def _local_command(args: argparse.Namespace, config: Config) -> int:
    """Run a workspace command's handler here, under the daemon's locks; exit 1 on `error`."""
    from hostd.commands.cleanup import CleanupHandler
    from hostd.commands.local import run_locally
    from hostd.commands.reconcile import ReconcileHandler

    params: dict[str, Any] = {"worktreePath": str(Path(args.path).absolute())}
    handler: Any = ReconcileHandler()
    if args.command == "cleanup":
        handler = CleanupHandler()
        if args.force:
            params.update(force=True, reason=args.reason or "")
    result = asyncio.run(run_locally(handler, params, config))
    _print_json(result)
    return 1 if result.get("error") else 0


LOCAL_COMMANDS = {"cleanup", "reconcile"}


def _check(args: argparse.Namespace, config: Config) -> int:
    """The effective config, the file it came from and the API URL the relay will be given."""
    from hostd.api.handlers import version_body

    config_file = args.config or os.environ.get("HOSTD_CONFIG") or None
    body: dict[str, Any] = {
        "configFile": os.path.abspath(config_file) if config_file else None,
        "apiUrl": config.public_url,
    }
    unreachable = config.unreachable_api_warning()
    if unreachable:
        body["warning"] = unreachable
        print(f"hostd: warning: {unreachable}", file=sys.stderr)
    _print_json({**body, "config": config.redacted(), "version": version_body()})
    return 0


def _dev_relay(args: argparse.Namespace) -> int:
    from hostd.config import split_listen
    from hostd.devrelay import run

    setup_logging("info", "text", secrets=[args.token])
    host, port = split_listen(args.listen)
    return run(host=host, port=port, db_path=args.db, token=args.token)


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
    if args.command in QUERIES:
        return _query(args)
    try:
        config = _load(args)
    except ConfigError as exc:
        print(f"hostd: config error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    if args.command == "check":
        return _check(args, config)
    if args.command == "run":
        from hostd.daemon import serve

        setup_logging(config.log.level, config.log.format, secrets=[config.relay.token])
        return asyncio.run(serve(config))
    if args.command in LOCAL_COMMANDS:
        return _local_command(args, config)
    raise AssertionError(f"unhandled command {args.command}")


if __name__ == "__main__":
    sys.exit(main())
