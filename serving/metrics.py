"""A few Prometheus metrics, written in the text exposition format (no client library needed)."""
from __future__ import annotations

import bisect
import time
from collections import defaultdict

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


def _labels(labels: tuple) -> str:
    return "{" + ",".join(f'{k}="{v}"' for k, v in labels) + "}" if labels else ""


class Counter:
    def __init__(self, name: str, help_: str):
        self.name, self.help, self.values = name, help_, defaultdict(float)

    def inc(self, amount: float = 1.0, **labels) -> None:
        self.values[tuple(sorted(labels.items()))] += amount

    def render(self) -> list[str]:
        lines = [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} counter"]
        return lines + [f"{self.name}{_labels(k)} {v:g}" for k, v in sorted(self.values.items())]


class Gauge:
    def __init__(self, name: str, help_: str, read):
        self.name, self.help, self.read = name, help_, read

    def render(self) -> list[str]:
        return [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} gauge", f"{self.name} {self.read():g}"]


class Histogram:
    def __init__(self, name: str, help_: str, buckets: tuple):
        self.name, self.help, self.buckets = name, help_, buckets
        self.series: dict[tuple, list] = {}  # labels -> [bucket counts..., +Inf count, sum]

    def observe(self, value: float, **labels) -> None:
        self.observe_key(value, tuple(sorted(labels.items())))

    def observe_key(self, value: float, key: tuple) -> None:
        """observe() with the labels already a sorted tuple of (name, value)."""
        s = self.series.get(key) or self.series.setdefault(key, [0] * (len(self.buckets) + 1) + [0.0])
        s[bisect.bisect_left(self.buckets, value)] += 1
        s[-1] += value

    def render(self) -> list[str]:
        lines = [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} histogram"]
        for key, s in sorted(self.series.items()):
            total = 0
            for bound, count in zip(list(self.buckets) + ["+Inf"], s[:-1]):
                total += count
                lines.append(f"{self.name}_bucket{_labels(key + (('le', str(bound)),))} {total}")
            lines += [f"{self.name}_sum{_labels(key)} {s[-1]:g}", f"{self.name}_count{_labels(key)} {total}"]
        return lines


class Metrics:
    def __init__(self, queue_depth, sessions_active):
        self.in_flight = 0
        self.requests = Counter("lstm_requests_total", "HTTP requests by route and status code.")
        self.latency = Histogram("lstm_request_latency_seconds", "Request latency by route.", LATENCY_BUCKETS)
        self.batch_size = Histogram("lstm_batch_size", "Sequences per model run.", BATCH_BUCKETS)
        self.rejected = Counter("lstm_rejected_total", "Requests refused for capacity, by reason.")
        self.all = [self.requests, self.latency, self.batch_size, self.rejected,
                    Gauge("lstm_queue_depth", "Sequences waiting for a batch.", queue_depth),
                    Gauge("lstm_sessions_active", "Open streaming sessions.", sessions_active),
                    Gauge("lstm_requests_in_flight", "Requests being handled, this scrape included.",
                          lambda: self.in_flight)]
        self.keys: dict[tuple, tuple] = {}  # (route, method, status) -> its label keys, made once

    def keys_of(self, route: str, method: str, status: int) -> tuple:
        labels = tuple(sorted({"route": route, "method": method, "status": status}.items()))
        keys = self.keys[route, method, status] = (labels, (("route", route),))
        return keys

    def started(self) -> float:
        """One more request in flight; returns its start time for finished()."""
        self.in_flight += 1
        return time.perf_counter()

    def finished(self, start: float, route: str, method: str, status: int) -> None:
        self.in_flight -= 1
        count, latency = self.keys.get((route, method, status)) or self.keys_of(route, method, status)
        self.requests.values[count] += 1
        self.latency.observe_key(time.perf_counter() - start, latency)

    def render(self) -> str:
        return "\n".join(line for m in self.all for line in m.render()) + "\n"
