"""The gateway's cache of API-key verification material (gateway/keycache.py):
what it serves, when it asks users again, and what each users event drops."""
from gateway.keycache import KeyCache, Material, material_from


def answer(key_id="k1", user_id="u1", state="active", revoked=False, secret="s" * 64):
    return {"key_id": key_id, "user_id": user_id, "permissions": ["read", "trade"],
            "ip_allowlist": None, "expires_at": None, "revoked": revoked,
            "account_state": state, "secret": secret}


class Users:
    """users.verification_material, counting the calls."""

    def __init__(self, answers):
        self.answers = answers
        self.calls = 0
        self.during_fetch = None

    def __call__(self, api_key):
        self.calls += 1
        if self.during_fetch:
            self.during_fetch()
        return material_from(self.answers.get(api_key))


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def live_cache(users, ttl_s=60.0, clock=None):
    cache = KeyCache(users, ttl_s, clock or Clock())
    cache.set_live(True)
    return cache


def test_a_cached_key_is_served_without_asking_users_again():
    users = Users({"A": answer()})
    cache = live_cache(users)
    first = cache.material("A")
    assert [cache.material("A") for _ in range(5)] == [first] * 5
    assert users.calls == 1 and cache.hits == 5


def test_nothing_is_kept_while_the_event_consumer_is_not_consuming():
    users = Users({"A": answer()})
    cache = KeyCache(users, 60.0, Clock())
    cache.material("A")
    cache.material("A")
    assert users.calls == 2 and len(cache) == 0


def test_losing_the_consumer_empties_the_cache():
    users = Users({"A": answer()})
    cache = live_cache(users)
    cache.material("A")
    cache.set_live(False)
    cache.material("A")
    assert users.calls == 2 and len(cache) == 0


def test_an_entry_expires_after_the_ttl_whatever_happens():
    clock = Clock()
    users = Users({"A": answer()})
    cache = live_cache(users, ttl_s=60.0, clock=clock)
    cache.material("A")
    clock.now += 59.9
    cache.material("A")
    assert users.calls == 1
    clock.now += 0.2
    cache.material("A")
    assert users.calls == 2


def test_api_key_revoked_and_changed_drop_that_key_only():
    users = Users({"A": answer("k1", "u1"), "B": answer("k2", "u1")})
    cache = live_cache(users)
    cache.material("A"), cache.material("B")
    for event in ("api_key_revoked", "api_key_changed"):
        cache.handle(event, {"key_id": "k1", "user_id": "u1"})
        assert len(cache) == 1
        cache.material("A")
    assert users.calls == 4


def test_each_account_event_drops_every_key_of_the_user():
    users = Users({"A": answer("k1", "u1"), "B": answer("k2", "u1"), "C": answer("k3", "u2")})
    cache = live_cache(users)
    for event in ("user_frozen", "user_unfrozen", "user_closed"):
        for key in "ABC":
            cache.material(key)
        cache.handle(event, {"user_id": "u1", "state": "frozen"})
        assert len(cache) == 1, event


def test_other_events_drop_nothing():
    users = Users({"A": answer()})
    cache = live_cache(users)
    cache.material("A")
    cache.handle("user_signed_up", {"user_id": "u1"})
    assert len(cache) == 1


def test_material_fetched_while_an_event_was_handled_is_used_once_not_kept():
    users = Users({"A": answer("k1", "u1")})
    cache = live_cache(users)
    users.during_fetch = lambda: cache.handle("api_key_revoked", {"key_id": "k9"})
    assert cache.material("A").record.key_id == "k1"
    users.during_fetch = None
    cache.material("A")
    assert users.calls == 2


def test_an_unknown_key_is_not_cached():
    users = Users({})
    cache = live_cache(users)
    assert cache.material("Z") is None and cache.material("Z") is None
    assert users.calls == 2


def test_material_never_shows_its_secret():
    material = material_from(answer(secret="TOPSECRET" * 7))
    assert isinstance(material, Material) and "TOPSECRET" not in repr(material)


def test_the_cache_is_bounded():
    users = Users({str(n): answer(f"k{n}") for n in range(10)})
    cache = KeyCache(users, 60.0, Clock(), max_entries=4)
    cache.set_live(True)
    for n in range(10):
        cache.material(str(n))
    assert len(cache) == 4
