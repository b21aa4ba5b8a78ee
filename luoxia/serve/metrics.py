"""Prometheus metrics of one server (its own registry, so several apps in one process — tests —
do not collide): requests, generated tokens, latency histograms, queue depth."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
KNOWN_PATHS = ("/v1/models", "/v1/completions", "/v1/chat/completions", "/v1/images/generations", "/v1/moderations",
               "/v1/embeddings", "/v1/watermark/detect", "/v1/redact", "/v1/history", "/v1/review", "/v1/runs",
               "/health", "/metrics")


class Metrics:
    def __init__(self, queue_depth: Callable[[], int], active: Callable[[], int]):
        self.registry = CollectorRegistry()
        self.requests = Counter("luoxia_requests", "HTTP requests", ["path", "status"], registry=self.registry)
        self.latency = Histogram("luoxia_request_seconds", "request latency", ["path"], buckets=LATENCY_BUCKETS,
                                 registry=self.registry)
        self.tokens = Counter("luoxia_generated_tokens", "tokens generated", ["model"], registry=self.registry)
        self.first_token = Histogram("luoxia_time_to_first_token_seconds", "time to the first streamed text",
                                     buckets=LATENCY_BUCKETS, registry=self.registry)
        Gauge("luoxia_queue_depth", "requests waiting for a batch slot", registry=self.registry).set_function(
            lambda: _safe(queue_depth))
        Gauge("luoxia_active_sequences", "sequences being decoded", registry=self.registry).set_function(
            lambda: _safe(active))

    def observe_request(self, path: str, status: int, seconds: float) -> None:
        path = path if path in KNOWN_PATHS else "other"  # unbounded label values would grow forever
        self.requests.labels(path, str(status)).inc()
        self.latency.labels(path).observe(seconds)

    def render(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


def _safe(read: Callable[[], int]) -> float:
    try:
        return float(read())
    except AttributeError:  # before the models are loaded
        return 0.0
