"""Self-upgrade: the managed install layout, staging, switch, trial boot, rollback, service."""
