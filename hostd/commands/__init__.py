"""Relay command handlers, one module per command type, collected in a Registry."""

from __future__ import annotations

import os
from collections.abc import Mapping

from hostd.commands.registry import BaseHandler, Command, CommandContext, Handler, Registry, Result
from hostd.config import Config

__all__ = [
    "BaseHandler",
    "Command",
    "CommandContext",
    "Handler",
    "Registry",
    "Result",
    "build_registry",
]

TEST_HANDLERS_ENV = "HOSTD_TEST_HANDLERS"


def build_registry(
    env: Mapping[str, str] | None = None,
    config: Config | None = None,
    config_path: str | None = None,
) -> Registry:
    env = os.environ if env is None else env
    registry = Registry()
    if config is not None:
        from hostd.commands.upgrade import UpgradeHandler

        registry.register(UpgradeHandler(config, config_path, env))
    if env.get(TEST_HANDLERS_ENV) == "1":
        from hostd.commands.testing import CounterHandler

        registry.register(CounterHandler())
    return registry
