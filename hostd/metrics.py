"""Prometheus metrics, one registry per daemon (labels never carry paths or branch names)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

__all__ = ["CONTENT_TYPE_LATEST", "Metrics"]


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "hostd_http_requests",
            "HTTP requests served, by route template, method and status.",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "hostd_http_request_duration_seconds",
            "HTTP request latency by route template.",
            ["route"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=self.registry,
        )
        self.recalled = Counter(
            "hostd_workspace_answers_recalled",
            "Workspace answers given again from the daemon's memory, without a git worker.",
            registry=self.registry,
        )
        self.commands = Counter(
            "hostd_commands",
            "Relay commands finished, by type and outcome.",
            ["type", "outcome"],
            registry=self.registry,
        )
        self.heartbeat_failures = Counter(
            "hostd_relay_heartbeat_failures",
            "Failed heartbeats to the relay.",
            registry=self.registry,
        )
        self.loop_lag = Gauge(
            "hostd_event_loop_lag_seconds",
            "How late the event loop ran a timer at the last check.",
            registry=self.registry,
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
