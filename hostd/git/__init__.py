"""Synchronous git queries over pygit2: no HTTP, no asyncio, nothing of hostd's outside git/."""
