"""The development relay: the relay side of the hostd contract, for tests and trying hostd out.

Not a production relay: one process, SQLite, no dashboard, and fault switches under /api/_dev.
"""

from hostd.devrelay.app import create_app, run, start
from hostd.devrelay.context import RelaySettings
from hostd.devrelay.store import Store

__all__ = ["RelaySettings", "Store", "create_app", "run", "start"]
