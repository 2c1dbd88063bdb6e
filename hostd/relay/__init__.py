"""The relay link: HTTP client, registration and heartbeat, command loop, journal, locks."""
