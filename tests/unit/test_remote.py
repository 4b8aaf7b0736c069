"""What crosses between the runtime and a worker process or Ray task (runtime/_remote.py)."""

from __future__ import annotations

import threading

from treadle.runtime import ActivityError, Retry
from treadle.runtime._remote import RemoteCall, execute
from treadle.storage import encode, unpack


class Boom(Exception):
    pass


Boom.__module__ = "__mp_main__"  # how a worker sees a class defined in the runtime's main script


def raise_boom() -> None:
    raise Boom("nope")


def interrupted() -> None:
    raise KeyboardInterrupt


def call(function: object) -> RemoteCall:
    args, _ = encode([], "args")
    return RemoteCall(
        module="", qualname="", function=function, args=args, context_param=None,  # type: ignore[arg-type]
        run_id="r", step="0", attempt=1, key=None, limit=1 << 20,
    )  # fmt: skip


def test_a_main_script_error_keeps_the_name_the_runtime_knows() -> None:
    kind, packed, _original, lineage = execute(call(raise_boom), threading.Event())
    error = unpack(packed)
    assert kind == "error" and isinstance(error, ActivityError)
    assert error.type == "__main__.Boom", error.type
    assert lineage[0] == "__main__.Boom" and "builtins.Exception" in lineage


def test_an_interrupt_after_a_cancel_is_a_cancellation() -> None:
    flag = threading.Event()
    flag.set()
    error = unpack(execute(call(interrupted), flag)[1])
    assert error.type == "treadle.runtime.CancelledError"
    error = unpack(execute(call(interrupted), threading.Event())[1])
    assert error.type == "builtins.KeyboardInterrupt"  # no cancel: a real interrupt stays one


def test_retry_matches_non_retryable_by_class_name() -> None:
    policy = Retry(attempts=3, non_retryable=(ValueError,))
    assert not policy.retries_named(("builtins.ValueError", "builtins.Exception"), 1)
    assert policy.retries_named(("builtins.KeyError", "builtins.Exception"), 1)
    assert not policy.retries_named(("builtins.KeyError", "builtins.Exception"), 3)  # out of attempts


def test_a_workers_cancel_flag_reads_the_shared_byte() -> None:
    import multiprocessing

    from treadle.runtime._processes import _SharedFlag

    byte = multiprocessing.get_context("spawn").RawValue("b", 0)
    flag = _SharedFlag(byte)
    assert not flag.is_set() and flag.wait(0.02) is False
    setter = threading.Timer(0.05, lambda: setattr(byte, "value", 1))
    setter.start()
    assert flag.wait(5.0) is True  # set from elsewhere (the parent, in a worker)
    assert flag.is_set()
    flag.clear()
    assert not flag.is_set() and byte.value == 0
    setter.join(5.0)
