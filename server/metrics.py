"""Prometheus metrics, one registry per app (tests build several apps in one process)."""
from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

# The project's one percentile (linear interpolation), used here by the call benchmark and the supervisors'
# dashboard; it lives in routing/ because the routing benchmark uses it too and routing/ may not import server/.
from routing.stats import percentile  # noqa: F401  (server code imports it from here)

# Buckets around the latency target (end of speech -> first answer audio: median 1.2 s, p95 2.0 s).
LATENCY_BUCKETS = (0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.2, 1.5, 2.0, 3.0, 5.0, 10.0)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.calls_in_progress = Gauge("hotline_calls_in_progress", "Calls connected now", ["protocol"], registry=r)
        self.calls = Counter("hotline_calls", "Calls ended, by final state", ["protocol", "state"], registry=r)
        self.turns = Counter("hotline_turns", "Turns stored", ["speaker", "language", "route"], registry=r)
        self.stage_latency = Histogram(
            "hotline_stage_latency_seconds",
            "Time per stage: endpointing, recognition, routing, synthesis (first audio), response (end of speech "
            "to first answer audio)",
            ["stage"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.queue_depth = Gauge("hotline_pool_queue_depth", "Jobs waiting or running in a worker pool", ["pool"], registry=r)
        self.errors = Counter("hotline_errors", "Errors by kind", ["kind"], registry=r)
        self.barge_ins = Counter("hotline_barge_ins", "Answers interrupted by the caller", registry=r)
        self.preemptive_syntheses = Counter(
            "hotline_preemptive_syntheses", "Answers' first chunks synthesized before the final transcript, by outcome "
            "(started, used, dropped)", ["outcome"], registry=r)
        self.agent_queue = Gauge("hotline_agent_queue_waiting", "Calls waiting for an agent", ["language"], registry=r)

    def render(self) -> bytes:
        return generate_latest(self.registry)
