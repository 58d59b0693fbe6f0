"""serving/wire.py: a response's writes leave in one piece, in order, and nothing is lost at close."""
from __future__ import annotations

import asyncio

from lstm_onnx.serving.wire import LARGE, CoalescingTransport


class Recorder:
    def __init__(self):
        self.writes, self.closed, self.aborted = [], False, False

    def write(self, data):
        self.writes.append(bytes(data))

    def is_closing(self):
        return self.closed

    def close(self):
        self.closed = True

    def abort(self):
        self.aborted = True

    def get_extra_info(self, name):
        return ("127.0.0.1", 1) if name == "peername" else None


def test_writes_of_one_iteration_leave_as_one():
    async def main():
        raw = Recorder()
        t = CoalescingTransport(raw, asyncio.get_running_loop())
        t.write(b"HTTP/1.1 200 OK\r\n\r\n")
        t.write(b"body")
        assert raw.writes == []
        await asyncio.sleep(0)
        t.write(b"next")
        await asyncio.sleep(0)
        return raw.writes

    assert asyncio.run(main()) == [b"HTTP/1.1 200 OK\r\n\r\nbody", b"next"]


def test_a_large_write_goes_at_once_after_what_is_pending():
    async def main():
        raw = Recorder()
        t = CoalescingTransport(raw, asyncio.get_running_loop())
        t.write(b"head")
        t.write(b"x" * LARGE)
        await asyncio.sleep(0)
        return raw.writes

    assert asyncio.run(main()) == [b"head", b"x" * LARGE]


def test_close_sends_what_is_pending_and_abort_drops_it():
    async def main():
        raw, other = Recorder(), Recorder()
        loop = asyncio.get_running_loop()
        t, u = CoalescingTransport(raw, loop), CoalescingTransport(other, loop)
        t.write(b"refusal")
        t.close()
        u.write(b"dropped")
        u.abort()
        await asyncio.sleep(0)
        return raw, other, t.get_extra_info("peername")

    raw, other, peer = asyncio.run(main())
    assert raw.writes == [b"refusal"] and raw.closed
    assert other.writes == [] and other.aborted
    assert peer == ("127.0.0.1", 1)
