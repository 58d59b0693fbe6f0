"""The bad-input and fault harness's shared tally and scale.

Every harness case calls `record(harness, clean, detail)`: `clean` is True when the program under test met the
invariant (a clean 4xx, a one-line error, an intact artifact). `make test` runs a fast, seeded slice;
`make fuzz` sets FUZZ_SCALE (loop counts) and the hypothesis profile `fuzz` (example counts), and the session
ends with the figures: cases tried, clean, failures.
"""
from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field


def scale() -> int:
    """How many times longer than the fast slice a harness loop should run (FUZZ_SCALE, default 1)."""
    return max(1, int(os.environ.get("FUZZ_SCALE", "1")))


@dataclass
class Tally:
    tried: Counter = field(default_factory=Counter)
    clean: Counter = field(default_factory=Counter)
    failures: dict = field(default_factory=dict)  # harness -> [detail, ...] (first few)

    def record(self, harness: str, clean: bool, detail: str = "") -> None:
        self.tried[harness] += 1
        if clean:
            self.clean[harness] += 1
        else:
            self.failures.setdefault(harness, []).append(detail)

    def lines(self) -> list[str]:
        out = []
        for h in sorted(self.tried):
            bad = self.tried[h] - self.clean[h]
            out.append(f"{h}: {self.tried[h]} cases tried, {self.clean[h]} clean errors, {bad} failures")
            out += [f"    {d}" for d in self.failures.get(h, [])[:5]]
        total, ok = sum(self.tried.values()), sum(self.clean.values())
        if total:
            out.append(f"harness total: {total} cases tried, {ok} clean errors, {total - ok} failures")
        return out


TALLY = Tally()
record = TALLY.record
