"""Plain-text and Markdown tables, for the reports that verify and bench print."""
from __future__ import annotations


def grid(head: list[str], rows: list[list[str]], markdown: bool = False) -> list[str]:
    """The lines of a table: Markdown pipes, or columns padded to their widest cell."""
    if markdown:
        return ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)] + ["| " + " | ".join(r) + " |" for r in rows]
    widths = [max(len(r[i]) for r in [head] + rows) for i in range(len(head))]
    fmt = lambda r: "  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip()  # noqa: E731
    return [fmt(head), fmt(["-" * w for w in widths])] + [fmt(r) for r in rows]
