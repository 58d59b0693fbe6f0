"""One write per response: uvicorn writes a response's head and its body with a transport.write each, which is two
send() system calls, and two wake-ups of the client, for a small reply. A py-spy profile of the server at 64
clients (v2 binary) put a sixth of its event loop's time in those writes. Here the writes of one loop iteration
go out together, at the end of it.
"""
from __future__ import annotations

LARGE = 64 << 10  # a write this big goes out at once (after what is pending): joining it would copy it


class CoalescingTransport:
    """A transport whose small writes are joined into one per event-loop iteration; anything else goes to the
    wrapped transport."""

    __slots__ = ("transport", "loop", "pending", "ended")

    def __init__(self, transport, loop):
        self.transport, self.loop, self.pending, self.ended = transport, loop, None, False

    def write(self, data) -> None:
        if self.ended:  # asyncio refuses a write after write_eof(); nothing may follow a refusal's end anyway
            return
        if len(data) >= LARGE:
            self.flush()
            self.transport.write(data)
        elif self.pending is None:
            self.pending = [data]
            self.loop.call_soon(self.flush)
        else:
            self.pending.append(data)

    def flush(self) -> None:
        pending, self.pending = self.pending, None
        if pending and not self.transport.is_closing():
            self.transport.write(pending[0] if len(pending) == 1 else b"".join(pending))

    def close(self) -> None:
        self.flush()
        self.transport.close()

    def write_eof(self) -> None:
        self.flush()  # serving/protocol.py writes a refusal, then the end: the end must not overtake it
        self.ended = True
        self.transport.write_eof()

    def abort(self) -> None:
        self.pending = None
        self.transport.abort()

    def __getattr__(self, name):
        return getattr(self.transport, name)


def coalescing(protocol: type) -> type:
    """`protocol` (a uvicorn HTTP protocol class, which has .loop) writing through a CoalescingTransport."""

    class Coalescing(protocol):
        def connection_made(self, transport) -> None:
            super().connection_made(CoalescingTransport(transport, self.loop))

    Coalescing.__name__ = Coalescing.__qualname__ = protocol.__name__
    return Coalescing
