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


def _service_args(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", required=True)
    install = actions.add_parser("install", help="set up the managed install and its unit")
    status = actions.add_parser("status", help="print the install: versions, links, last upgrade")
    uninstall = actions.add_parser("uninstall", help="remove the unit (--purge: the root too)")
    for action in (install, status, uninstall):
        scope = action.add_mutually_exclusive_group()
        scope.add_argument(
            "--user", dest="system", action="store_false", default=None, help="a user service"
        )
        scope.add_argument("--system", dest="system", action="store_true", help="a system service")
        action.add_argument("--root", help="install root (default per user/system)")
        action.add_argument("--config", help="the config file the unit runs with")
        action.add_argument(
            "--unit-dir", help="the unit's folder instead of systemd's (no systemctl calls then)"
        )
    install.add_argument("--from", dest="source", help="what pip installs (default: this hostd)")
    install.add_argument("--enable", action="store_true", help="run the systemctl lines too")
    install.add_argument("--service-user", default="hostd", help="User= of the system unit")
    uninstall.add_argument("--purge", action="store_true", help="also delete the install root")


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
    relay = sub.add_parser("dev-relay", help="run the development relay (not for production)")
    relay.add_argument("--listen", default="127.0.0.1:4850", help="host:port")
    relay.add_argument("--db", default=":memory:", help="SQLite file (default: in memory)")
    relay.add_argument("--token", default=None, help="shared token the relay requires")
    _service_args(sub.add_parser("service", help="install hostd as a systemd service"))
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


def _config_path(args: argparse.Namespace) -> str | None:
    """The config file in use, absolute, so a staged version can be checked against it."""
    path = args.config or os.environ.get("HOSTD_CONFIG") or None
    return os.path.abspath(path) if path else None


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


def _check(args: argparse.Namespace, config: Config) -> int:
    """The effective config, the file it came from and the API URL the relay will be given."""
    from hostd.api.handlers import version_body
    from hostd.upgrade.managed import eligibility

    body: dict[str, Any] = {
        "configFile": _config_path(args),
        "apiUrl": config.public_url,
    }
    unreachable = config.unreachable_api_warning()
    if unreachable:
        body["warning"] = unreachable
        print(f"hostd: warning: {unreachable}", file=sys.stderr)
    _print_json(
        {
            **body,
            "config": config.redacted(),
            "version": version_body(),
            "upgrade": eligibility(config).as_json(),
        }
    )
    return 0


def _service(args: argparse.Namespace) -> int:
    from hostd.upgrade import service

    setup_logging("info", "text")
    scope = service.scope_of(args.system, args.root, args.config, args.unit_dir)
    try:
        if args.action == "install":
            return asyncio.run(
                service.install(
                    scope, args.source, args.enable, args.root is not None, args.service_user
                )
            )
        if args.action == "uninstall":
            return service.uninstall(scope, args.purge)
    except (service.ServiceError, OSError, ValueError) as exc:
        print(f"hostd: service {args.action}: {exc}", file=sys.stderr)
        return 1
    _print_json(service.status_body(scope))
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
    if args.command == "service":
        return _service(args)
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
        return asyncio.run(serve(config, _config_path(args)))
    raise AssertionError(f"unhandled command {args.command}")


if __name__ == "__main__":
    sys.exit(main())
