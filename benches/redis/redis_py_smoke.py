"""Smoke test of `pydb server` with redis-py and its default settings.

redis-py 8 opens every connection with `HELLO 3` (RESP3) and
`CLIENT SETINFO`; this checks that the commands a Python user reaches for
first work through it: ping, set/get, a pipeline, scan_iter, info, mget,
incr, type, flushdb.

Usage: python3 redis_py_smoke.py PORT
"""

import sys

import redis


def main() -> None:
    port = int(sys.argv[1])
    r = redis.Redis(host="127.0.0.1", port=port)  # default settings
    assert r.ping() is True
    assert r.flushdb() is True  # start from nothing
    assert r.set("greeting", "hello") is True
    assert r.get("greeting") == b"hello"
    assert r.get("missing") is None

    # MULTI/EXEC do not exist yet in pydb: a plain pipeline.
    pipe = r.pipeline(transaction=False)
    for i in range(100):
        pipe.set(f"user:{i:03}", i)
    pipe.get("user:042")
    results = pipe.execute()
    assert results[:100] == [True] * 100, results[:3]
    assert results[100] == b"42"

    keys = sorted(r.scan_iter(match="user:*", count=7))
    assert keys == [f"user:{i:03}".encode() for i in range(100)], keys[:3]

    info = r.info()
    assert info["redis_version"], info
    assert r.info("keyspace")["db0"]["keys"] == 101

    assert r.mget("user:001", "missing", "greeting") == [b"1", None, b"hello"]
    assert r.incr("counter") == 1
    assert r.incr("counter", 41) == 42
    assert r.type("greeting") == b"string"
    assert r.type("missing") == b"none"
    assert r.config_get("maxclients")["maxclients"].isdigit()
    assert r.flushdb() is True
    assert r.dbsize() == 0 and r.get("greeting") is None

    # RESP2 still works for clients that do not ask for RESP3.
    r2 = redis.Redis(host="127.0.0.1", port=port, protocol=2)
    assert r2.set("k", "v") is True
    assert r2.get("k") == b"v"
    print(f"redis-py {redis.__version__} smoke: OK")


if __name__ == "__main__":
    main()
