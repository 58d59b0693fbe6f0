import pytest

from lstm_onnx.serving.sessions import ClientSessionLimit, SessionLimit, SessionOwned, SessionStore, UnknownSession


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


def test_delete_with_a_session_spares_a_newer_one_under_the_same_id():
    store = SessionStore(1, 4, ttl_s=10, max_sessions=4, clock=Clock())
    old = store.create("v2/int/7")
    new = store.create("v2/int/7")  # a restart replaces it
    with pytest.raises(UnknownSession):
        store.delete("v2/int/7", old)
    assert store.get("v2/int/7") is new
    store.delete("v2/int/7", new)
    assert len(store) == 0


def test_a_client_holds_at_most_its_quota_and_gets_slots_back_however_sessions_end():
    clock = Clock()
    store = SessionStore(1, 4, ttl_s=10, max_sessions=10, clock=clock, max_per_client=2)
    a, b = store.create(client="10.0.0.1"), store.create("v2/int/1", client="10.0.0.1")
    with pytest.raises(ClientSessionLimit):
        store.create(client="10.0.0.1")
    store.create(client="10.0.0.2")  # another client is not held back
    store.create("v2/int/1", client="10.0.0.1")  # a restart replaces b: still two
    store.delete(a.id)
    c = store.create(client="10.0.0.1")  # a's slot, freed by DELETE
    clock.t = 20
    with pytest.raises(UnknownSession):
        store.get(c.id)  # expired on look-up
    store.sweep()
    assert store.per_client == {}
    store.create(client="10.0.0.1"), store.create(client="10.0.0.1")


def test_a_refused_restart_leaves_the_sequence_and_another_client_cannot_take_it():
    """A client at its quota restarting an id: 429, and the sequence it named stays. Another client's open
    sequence cannot be restarted or continued by a client that guesses its id."""
    store = SessionStore(1, 2, ttl_s=60, max_sessions=10, max_per_client=1)
    victim = store.create("v2/int/7", "10.0.0.1")
    store.create("v2/int/8", "10.0.0.2")
    with pytest.raises(SessionOwned):
        store.create("v2/int/7", "10.0.0.2")
    with pytest.raises(SessionOwned):
        store.get("v2/int/7", "10.0.0.2")
    assert store.get("v2/int/7", "10.0.0.1") is victim and store.per_client == {"10.0.0.1": 1, "10.0.0.2": 1}
    mine = store.create("v2/int/8", "10.0.0.2")  # its own restart, at its quota: replaces, not refused
    assert store.sessions["v2/int/8"] is mine and store.per_client["10.0.0.2"] == 1
    with pytest.raises(ClientSessionLimit):
        store.create("v2/int/9", "10.0.0.2")
    assert set(store.sessions) == {"v2/int/7", "v2/int/8"}
