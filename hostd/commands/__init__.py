"""Relay command handlers, one module per command type, collected in a Registry."""

from __future__ import annotations

import os
from collections.abc import Mapping

from hostd.commands.registry import BaseHandler, Command, CommandContext, Handler, Registry, Result

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


def build_registry(env: Mapping[str, str] | None = None) -> Registry:
    env = os.environ if env is None else env
    registry = Registry()
    from hostd.commands.cleanup import CleanupHandler
    from hostd.commands.merge import MergeHandler
    from hostd.commands.reconcile import ReconcileHandler

    registry.register(MergeHandler())
    registry.register(CleanupHandler())
    registry.register(ReconcileHandler())
    if env.get(TEST_HANDLERS_ENV) == "1":
        from hostd.commands.testing import CounterHandler

        registry.register(CounterHandler())
    return registry
