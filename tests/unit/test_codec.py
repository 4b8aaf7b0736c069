"""treadle.storage.encode/decode: the value codec with its write-time round trip."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from treadle.storage import (
    DEFAULT_MAX_PAYLOAD,
    PayloadTooLargeError,
    SerializationError,
    TreadleError,
    decode,
    encode,
    pack,
)


def test_round_trip_turns_tuples_into_lists_and_returns_the_round_tripped_value() -> None:
    """encode returns (packed, value-after-unpack): user code sees lists where it passed tuples."""
    value = {"pair": (1, 2), "nested": [("a", (True, None)), {"t": ()}], "b": b"\x00\xff", "f": 1.5}
    data, back = encode(value, "step 1")
    assert isinstance(data, bytes)
    assert back == {"pair": [1, 2], "nested": [["a", [True, None]], {"t": []}], "b": b"\x00\xff", "f": 1.5}
    assert type(back["pair"]) is list
    assert type(back["nested"][0][1]) is list
    assert back is not value
    assert decode(data) == back


def test_top_level_tuple_comes_back_as_list() -> None:
    """A bare tuple is returned as a list, the type replay will produce."""
    _, back = encode((1, "x"), "step 2")
    assert back == [1, "x"]
    assert type(back) is list


def test_decode_none_stays_none() -> None:
    """decode(None) is None (a missing value, not an error)."""
    assert decode(None) is None


def test_aware_datetimes_round_trip() -> None:
    """Timezone-aware datetimes round-trip to the same instant, still aware."""
    utc = datetime(2024, 5, 17, 12, 30, 45, 123456, tzinfo=UTC)
    plus2 = datetime(2024, 5, 17, 14, 30, 45, 123456, tzinfo=timezone(timedelta(hours=2)))
    _, back = encode({"utc": utc, "plus2": plus2, "in_list": [utc]}, "step 3")
    assert back["utc"] == utc
    assert back["plus2"] == plus2
    assert back["in_list"] == [utc]
    for item in (back["utc"], back["plus2"], back["in_list"][0]):
        assert isinstance(item, datetime)
        assert item.tzinfo is not None


def test_naive_datetime_is_refused() -> None:
    """A naive datetime is ambiguous: SerializationError naming its path."""
    with pytest.raises(SerializationError) as info:
        encode({"when": datetime(2024, 1, 1)}, "step 4", root="result")
    assert info.value.path == "result['when']"
    assert "naive datetime" in str(info.value)


def test_set_is_refused_with_the_exact_path() -> None:
    """A set deep inside the value: the message names the step and `result['x'][3]: set`."""
    with pytest.raises(SerializationError) as info:
        encode({"x": [1, 2, 3, {1, 2}]}, "step 3.1", root="result")
    err = info.value
    assert "result['x'][3]: set" in str(err)
    assert "step 3.1" in str(err)
    assert err.where == "step 3.1"
    assert err.path == "result['x'][3]"
    assert err.problem == "set"


def test_default_root_is_value() -> None:
    """Without root=, paths start at `value`."""
    with pytest.raises(SerializationError) as info:
        encode([frozenset()], "argument order")
    assert info.value.path == "value[0]"
    assert "argument order" in str(info.value)


class Opaque:
    """An arbitrary user object msgpack cannot store."""


def test_arbitrary_object_is_refused_with_path_and_type() -> None:
    """An arbitrary object is named by its path and class name."""
    with pytest.raises(SerializationError) as info:
        encode({"ok": 1, "obj": Opaque()}, "step 5", root="result")
    assert info.value.path == "result['obj']"
    assert "result['obj']: Opaque" in str(info.value)


@pytest.mark.parametrize("number", [2**64, 2**100, -(2**63) - 1])
def test_int_outside_64_bits_is_refused(number: int) -> None:
    """Ints that do not fit in 64 bits (>= 2**64 or < -2**63) are refused with their path."""
    with pytest.raises(SerializationError) as info:
        encode({"n": [0, number]}, "step 6", root="result")
    assert info.value.path == "result['n'][1]"
    assert "64 bits" in str(info.value)


@pytest.mark.parametrize("number", [2**64 - 1, -(2**63)])
def test_ints_at_the_64_bit_edges_are_stored(number: int) -> None:
    """2**64-1 and -2**63 are the largest and smallest storable ints."""
    _, back = encode(number, "step 7")
    assert back == number


def test_dict_with_int_keys_is_refused() -> None:
    """Map keys must be str (msgpack refuses other keys on unpack): the path names the key."""
    with pytest.raises(SerializationError) as info:
        encode({"by_id": {7: "seven"}}, "step 8", root="result")
    assert info.value.path == "result['by_id'][7]"
    assert "dict key of type int" in str(info.value)


def test_self_referencing_list_is_refused() -> None:
    """A list containing itself is refused (not a RecursionError), naming where the cycle closes."""
    loop: list[object] = [1]
    loop.append(loop)
    with pytest.raises(SerializationError) as info:
        encode({"loop": loop}, "step 9", root="result")
    assert info.value.path == "result['loop'][1]"
    assert "refers to itself" in str(info.value)


def test_shared_but_acyclic_references_are_fine() -> None:
    """The same list twice is not a cycle."""
    shared = [1, 2]
    _, back = encode([shared, {"again": shared}], "step 10")
    assert back == [[1, 2], {"again": [1, 2]}]


def test_payload_over_limit_is_refused() -> None:
    """PayloadTooLargeError names the step, the size and the limit; exactly at the limit is fine."""
    value = {"blob": "x" * 500}
    size = len(pack(value))
    data, _ = encode(value, "step 11", limit=size)
    assert len(data) == size
    with pytest.raises(PayloadTooLargeError) as info:
        encode(value, "step 11", limit=size - 1)
    err = info.value
    assert err.size == size
    assert err.limit == size - 1
    assert err.where == "step 11"
    assert "step 11" in str(err)
    assert str(size - 1) in str(err)


def test_default_limit_is_one_mib() -> None:
    """The default cap is 1 MiB."""
    assert DEFAULT_MAX_PAYLOAD == 1024 * 1024
    with pytest.raises(PayloadTooLargeError):
        encode(b"\x00" * DEFAULT_MAX_PAYLOAD, "step 12")


def test_error_classes_are_treadle_errors_and_builtin_kinds() -> None:
    """SerializationError is a TreadleError and a TypeError; PayloadTooLargeError a TreadleError."""
    with pytest.raises(SerializationError) as serial:
        encode({1, 2}, "step 13")
    assert isinstance(serial.value, TreadleError)
    assert isinstance(serial.value, TypeError)
    assert str(serial.value).startswith("[TRD-SERIAL] ")
    with pytest.raises(PayloadTooLargeError) as big:
        encode("xx", "step 13", limit=1)
    assert isinstance(big.value, TreadleError)
    assert str(big.value).startswith("[TRD-TOOBIG] ")


class _Box:
    """A registered value type whose plain form may hold another _Box."""

    def __init__(self, inner: object) -> None:
        self.inner = inner


def test_registered_values_nest_and_a_failed_pack_leaves_the_packer_usable() -> None:
    """``pack`` reuses one packer per thread; a registered type packed in the middle of it
    (a value inside a value) must not disturb the outer value, nor must a failure."""
    from treadle.storage import register_type

    register_type(_Box, 99, lambda box: [box.inner], lambda plain: _Box(plain[0]))
    value = {"a": _Box(_Box([1, "x"])), "b": [2, _Box(None)]}
    back = decode(pack(value))
    assert back["a"].inner.inner == [1, "x"]
    assert back["b"][0] == 2
    assert back["b"][1].inner is None
    with pytest.raises(TypeError):
        pack({"ok": 1, "bad": {3}})
    assert decode(pack({"after": [1, 2]})) == {"after": [1, 2]}


def test_threads_pack_at_once_without_mixing_their_output() -> None:
    import threading

    errors: list[str] = []
    barrier = threading.Barrier(4)

    def worker(n: int) -> None:
        barrier.wait(10)
        for i in range(2000):
            value = {"thread": n, "i": i, "payload": [n] * (i % 17)}
            if decode(pack(value)) != value:
                errors.append(f"thread {n} item {i}")
                return

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
        assert not t.is_alive()
    assert errors == []
