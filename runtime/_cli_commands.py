"""The CLI commands that change something: ``signal``, ``cancel`` (through the inbox), ``run``, ``backup``."""

from __future__ import annotations

import importlib
import json
import os
import sys
import time
from collections.abc import Callable
from typing import Any, TextIO

import lmdb

from treadle.storage import DATABASES, StoreLockedError, run_key

from ._cli_render import progress_line
from ._cli_store import (
    EXIT_FAILED,
    EXIT_TIMEOUT,
    EXIT_USAGE,
    CliError,
    check_store,
    load_run,
    owner,
    read_store,
)
from ._errors import RunParkedError, WorkflowFailedError
from ._inbox import done_path, write_command

__all__ = ["backup", "parse_json", "run_workflow", "send_command"]

_POLL = 0.05


def parse_json(text: str, what: str) -> Any:
    """``text`` decoded as JSON; CliError (exit 2) naming ``what`` if it is not JSON."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise CliError(
            f"{what} is not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})", EXIT_USAGE
        ) from None


# -- signal / cancel -------------------------------------------------------------------------


def send_command(store_path: str, command: dict[str, Any], wait: float, out: TextIO) -> int:
    """Queue ``command`` in the store's inbox and, if a runtime owns the store, wait for its outcome."""
    store = check_store(store_path)
    run_id = command["run_id"]
    pid = owner(store)
    if pid is None:
        # Nobody will answer now: refuse what is bound to fail, queue the rest for the next start.
        with read_store(store) as reader:
            run = load_run(reader, run_id)
        if run.finished and not (command["cmd"] == "cancel" and run.status == "cancelled"):
            raise CliError(f"run {run_id!r} has finished ({run.status}); nothing to {command['cmd']}")
        command_id = write_command(store, command)
        print(
            f"queued: no runtime owns {store_path}; the {command['cmd']} is applied when one starts "
            f"(command {command_id})",
            file=out,
        )
        return 0
    command_id = write_command(store, command)
    path = done_path(store, command_id)
    deadline = time.monotonic() + wait
    while True:
        outcome = _read_done(path)
        if outcome is not None:
            break
        if time.monotonic() >= deadline:
            raise CliError(
                f"no answer from the runtime (pid {pid}) within {wait:g}s; the {command['cmd']} stays queued "
                f"as command {command_id} and is applied when the runtime reads its inbox",
                EXIT_TIMEOUT,
            )
        time.sleep(_POLL)
    try:
        os.unlink(path)
    except OSError:
        pass
    if not outcome.get("ok"):
        error = outcome.get("error") or {}
        raise CliError(f"{command['cmd']} rejected: {error.get('type', '?')}: {error.get('message', '')}")
    what = command["cmd"]
    if what == "signal":
        print(f"signal {command['name']!r} to run {run_id}: {outcome.get('outcome', 'sent')}", file=out)
    else:
        print(f"run {run_id}: {outcome.get('outcome', 'cancel requested')}", file=out)
    return 0


def _read_done(path: str) -> dict[str, Any] | None:
    try:
        with open(path, "rb") as handle:
            data = json.loads(handle.read().decode("utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise CliError(f"unreadable answer {path}: {exc}") from None
    return data if isinstance(data, dict) else {"ok": False, "error": {"type": "?", "message": repr(data)}}


# -- run -----------------------------------------------------------------------------------------


def _resolve(target: str) -> Callable[..., Any] | str:
    module_name, sep, attr = target.partition(":")
    if not sep or not module_name or not attr:
        raise CliError(f"expected MODULE:WORKFLOW, got {target!r}", EXIT_USAGE)
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise CliError(f"cannot import module {module_name!r}: {exc}") from None
    except Exception as exc:
        raise CliError(f"importing module {module_name!r} failed: {type(exc).__name__}: {exc}") from None
    found = getattr(module, attr, None)
    if found is not None:
        if not callable(found):
            raise CliError(f"{target} is not a workflow function")
        return found  # type: ignore[no-any-return]
    from ._registry import default_registry

    if attr in default_registry.workflows:
        return attr  # a registered name that is not a module attribute (``name=`` on @workflow)
    raise CliError(f"module {module_name!r} has no workflow {attr!r}")


def run_workflow(
    store_path: str,
    target: str,
    args_json: str | None,
    run_id: str | None,
    timeout: float | None,
    err: TextIO,
) -> tuple[int, Any]:
    """Start ``MODULE:WORKFLOW`` on a runtime of our own and wait for its result.

    Returns ``(exit status, result)``; progress goes to ``err``.
    """
    from ._runtime import Runtime

    args: list[Any] = []
    if args_json is not None:
        value = parse_json(args_json, "ARGS_JSON")
        args = value if isinstance(value, list) else [value]
    workflow = _resolve(target)
    try:
        runtime = Runtime(store_path)
    except StoreLockedError as exc:
        raise CliError(
            f"store {store_path} is owned by process {exc.pid} (one runtime per store); "
            "use `treadle signal`/`treadle cancel` against it, or stop that process first"
        ) from None
    try:
        exists = run_id is not None and runtime.store.get("runs", run_key(run_id)) is not None
        verb = "exists: following it" if exists else "started"
        try:
            handle = runtime.start(workflow, *args, run_id=run_id)
        except (TypeError, ValueError) as exc:
            raise CliError(f"cannot start {target}: {exc}", EXIT_USAGE) from None
        print(f"run {handle.run_id} {verb} on {store_path}", file=err, flush=True)
        deadline = None if timeout is None else time.monotonic() + timeout
        last = ""
        while True:
            line = progress_line(load_run(runtime.store, handle.run_id), runtime.clock.time())
            if line != last:
                print(line, file=err, flush=True)
                last = line
            try:
                result = handle.result(timeout=0.5)
            except TimeoutError:
                pass
            except WorkflowFailedError as exc:
                raise CliError(f"run {handle.run_id} failed: {exc.type}: {exc.message}") from None
            except RunParkedError as exc:
                raise CliError(
                    f"run {handle.run_id} is parked (its code no longer matches its journal): {exc.message}"
                ) from None
            else:
                line = progress_line(load_run(runtime.store, handle.run_id), runtime.clock.time())
                if line != last:
                    print(line, file=err, flush=True)
                return 0, result
            if deadline is not None and time.monotonic() >= deadline:
                raise CliError(
                    f"run {handle.run_id} did not finish within {timeout:g}s; it stays in the store and "
                    "resumes the next time a runtime opens it",
                    EXIT_TIMEOUT,
                )
    finally:
        runtime.shutdown()


# -- backup ----------------------------------------------------------------------------------


def backup(store_path: str, dest: str, out: TextIO) -> int:
    """A consistent, compacted copy of the store's ``data.mdb`` into folder ``dest``.

    Like ``mdb_copy -c``: one LMDB read transaction, registered in the store's
    reader table (so a running runtime's writer keeps every page it reads),
    safe while the runtime works.
    """
    source = check_store(store_path)
    target = os.path.realpath(dest)
    if target == source:
        raise CliError("the backup folder must differ from the store folder", EXIT_USAGE)
    if os.path.exists(os.path.join(target, "data.mdb")):
        raise CliError(f"{dest} already holds a store (data.mdb); choose an empty folder", EXIT_USAGE)
    os.makedirs(target, exist_ok=True)
    try:
        env = lmdb.open(source, readonly=True, lock=True, max_dbs=len(DATABASES) + 2, create=False)
    except lmdb.Error as exc:
        raise CliError(f"cannot open the store at {store_path} for a backup: {exc}", EXIT_FAILED) from None
    try:
        env.copy(target, compact=True)
    except lmdb.Error as exc:
        raise CliError(f"backup to {dest} failed: {exc}") from None
    finally:
        env.close()
    size = os.path.getsize(os.path.join(target, "data.mdb"))
    print(f"backed up {store_path} to {dest} ({size} bytes); open it with Runtime({dest!r})", file=out)
    return 0
