"""The host API: an aiohttp application over the read queries."""

from hostd.api.app import create_app

__all__ = ["create_app"]
