import pytest

from lstm_onnx.serving.sessions import SessionLimit, SessionStore, UnknownSession


class Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


def test_idle_sessions_expire_and_free_their_slot():
    clock = Clock()
    store = SessionStore(1, 4, ttl_s=10, max_sessions=2, clock=clock)
    a, b = store.create(), store.create()
    with pytest.raises(SessionLimit):
        store.create()
    clock.t = 8
    store.get(a.id)  # a step refreshes a
    clock.t = 12
    with pytest.raises(UnknownSession):
        store.get(b.id)  # b idle 12 s > 10
    assert store.get(a.id) is a
    store.create()  # b's slot is free again
    clock.t = 30
    assert store.sweep() == 2 and len(store) == 0
