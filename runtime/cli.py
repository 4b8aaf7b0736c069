"""The ``treadle`` command: look at runs, signal and cancel them, trace them, run a workflow.

Every command works on one store folder: ``--store``, else ``$TREADLE_STORE``,
else ``./treadle-data``. Commands that only read open the store read-only, so
they work while a service's runtime owns it; ``signal`` and ``cancel`` reach
that runtime through the store's command inbox (``<store>/inbox/``)::

    treadle runs --status running
    treadle show order-42 --follow
    treadle signal order-42 approve '{"by": "ann"}' --key approval-1
    treadle cancel order-42
    treadle trace order-42 -o order-42.json      # open in https://ui.perfetto.dev
    treadle timeline order-42 -o order-42.html
    treadle run shop.flows:enrich_order '[{"items": [1, 2]}]' --run-id order-43
    treadle backup /backups/treadle-2026-01-31

Exit status: 0 success, 1 the operation failed (unknown run, failed run,
rejected command), 2 bad input, 3 gave up waiting. Errors are one line on
stderr (``TREADLE_DEBUG=1`` adds the traceback of unexpected ones).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
import traceback
from typing import Any, NoReturn

from treadle.storage import TreadleError

from ._cli_commands import backup, parse_json, run_workflow, send_command
from ._cli_render import progress_line, render_run, render_runs, run_to_json
from ._cli_store import EXIT_TIMEOUT, EXIT_USAGE, CliError, load_run, load_runs, owner, read_store, step_count
from ._cli_timeline import render_html
from ._cli_trace import build_timeline, dump_trace
from ._inbox import write_atomic
from ._records import RunStatus

__all__ = ["main"]

DEFAULT_STORE = "./treadle-data"


class _Parser(argparse.ArgumentParser):
    """argparse, with usage errors on one line."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"expected a non-negative number of seconds, got {text!r}")
    return value


def _limit(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected at least 1, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``treadle`` (its ``--help`` is the reference)."""
    parser = _Parser(
        prog="treadle",
        description="Look at and steer the runs in a treadle store.",
        epilog="Exit status: 0 ok, 1 failed, 2 bad input, 3 gave up waiting.",
    )
    parser.add_argument(
        "--store",
        default=os.environ.get("TREADLE_STORE") or DEFAULT_STORE,
        help="the store folder (default: $TREADLE_STORE, else ./treadle-data)",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    commands.required = True

    runs = commands.add_parser("runs", help="list runs, newest first")
    runs.add_argument("--status", choices=[s.value for s in RunStatus], help="only runs with this status")
    runs.add_argument("--workflow", help="only runs of this workflow (registered name)")
    runs.add_argument("--limit", type=_limit, default=50, help="at most this many rows (default 50)")
    runs.add_argument("--json", action="store_true", help="print JSON lines instead of a table")
    runs.set_defaults(func=_cmd_runs)

    show = commands.add_parser("show", help="a run's step tree")
    show.add_argument("run_id", metavar="RUN_ID")
    show.add_argument("--follow", action="store_true", help="refresh until the run finishes")
    show.add_argument("--timeout", type=_positive, default=60.0, help="--follow gives up after this (60 s)")
    show.add_argument("--interval", type=_positive, default=0.5, help="--follow refresh period (0.5 s)")
    show.add_argument("--json", action="store_true", help="print the run and its steps as JSON")
    show.set_defaults(func=_cmd_show)

    signal = commands.add_parser("signal", help="send a signal to a run")
    signal.add_argument("run_id", metavar="RUN_ID")
    signal.add_argument("name", metavar="NAME")
    signal.add_argument("payload", metavar="PAYLOAD_JSON", nargs="?", help="the payload, as JSON (null)")
    signal.add_argument("--key", help="idempotency key: a signal re-sent with the same key is a no-op")
    signal.add_argument("--wait", type=_positive, default=10.0, help="wait this long for the runtime (10 s)")
    signal.set_defaults(func=_cmd_signal)

    cancel = commands.add_parser("cancel", help="cancel a run")
    cancel.add_argument("run_id", metavar="RUN_ID")
    cancel.add_argument("--wait", type=_positive, default=10.0, help="wait this long for the runtime (10 s)")
    cancel.set_defaults(func=_cmd_cancel)

    trace = commands.add_parser("trace", help="write a Chrome trace-event file (Perfetto, chrome://tracing)")
    trace.add_argument("run_id", metavar="RUN_ID")
    trace.add_argument("-o", "--output", required=True, metavar="FILE.json")
    trace.set_defaults(func=_cmd_trace)

    timeline = commands.add_parser("timeline", help="write a self-contained HTML timeline")
    timeline.add_argument("run_id", metavar="RUN_ID")
    timeline.add_argument("-o", "--output", required=True, metavar="FILE.html")
    timeline.set_defaults(func=_cmd_timeline)

    run = commands.add_parser("run", help="start a workflow on the store and wait for its result")
    run.add_argument(
        "target", metavar="MODULE:WORKFLOW", help="e.g. shop.flows:enrich_order (cwd is importable)"
    )
    run.add_argument(
        "args", metavar="ARGS_JSON", nargs="?", help="a JSON array of arguments (or one argument)"
    )
    run.add_argument("--run-id", help="the run's id (default: a new uuid); an existing id resumes that run")
    run.add_argument(
        "--timeout", type=_positive, default=None, help="give up waiting after this many seconds"
    )
    run.add_argument("-q", "--quiet", action="store_true", help="no progress lines on stderr")
    run.set_defaults(func=_cmd_run)

    copy = commands.add_parser("backup", help="copy the store consistently, also while a runtime uses it")
    copy.add_argument("dest", metavar="DEST_DIR", help="an empty (or new) folder")
    copy.set_defaults(func=_cmd_backup)
    return parser


# -- commands -------------------------------------------------------------------------------


def _cmd_runs(args: argparse.Namespace) -> int:
    with read_store(args.store) as store:
        runs = load_runs(store)
        if args.status:
            runs = [run for run in runs if run.status == args.status]
        if args.workflow:
            runs = [run for run in runs if run.workflow == args.workflow]
        more = max(0, len(runs) - args.limit)
        runs = runs[: args.limit]
        counts = {run.run_id: step_count(store, run.run_id) for run in runs}
    now = time.time()
    if args.json:
        for run in runs:
            row = {
                "run_id": run.run_id,
                "workflow": run.workflow,
                "status": run.status,
                "created": run.created,
                "updated": run.updated,
                "steps": counts[run.run_id],
            }
            print(json.dumps(row))
        return 0
    if not runs:
        print("no runs" + (" match" if args.status or args.workflow else " in this store"))
        return 0
    for line in render_runs(runs, counts, now):
        print(line)
    if more:
        print(f"... {more} more (use --limit)")
    return 0


def _load(store_path: str, run_id: str) -> Any:
    with read_store(store_path) as store:
        return load_run(store, run_id)


def _width() -> int:
    return max(80, shutil.get_terminal_size((140, 40)).columns)


def _cmd_show(args: argparse.Namespace) -> int:
    run = _load(args.store, args.run_id)
    if args.json:
        print(run_to_json(run))
        return 0
    pid = owner(os.path.realpath(args.store))
    if not args.follow:
        print("\n".join(render_run(run, time.time(), width=_width(), owner=pid)))
        return 0
    return _follow(args, run, pid)


def _follow(args: argparse.Namespace, run: Any, pid: int | None) -> int:
    """Refresh until the run is done: redraw on a terminal, else print each new progress line."""
    tty = sys.stdout.isatty()
    deadline = time.monotonic() + args.timeout
    last = ""
    if run.done:
        print("\n".join(render_run(run, time.time(), width=_width(), owner=pid)))
        return 0 if run.status == "completed" else 1
    if not tty:
        print("\n".join(render_run(run, time.time(), width=_width(), owner=pid)), flush=True)
    while True:
        now = time.time()
        if tty:
            page = "\n".join(render_run(run, now, width=_width(), owner=pid))
            sys.stdout.write("\x1b[H\x1b[2J" + page + "\n" + progress_line(run, now) + "\n")
            sys.stdout.flush()
        else:
            line = progress_line(run, now)
            if line != last:
                print(line, flush=True)
                last = line
        if run.done:
            break
        if time.monotonic() >= deadline:
            raise CliError(f"run {run.run_id} is still {run.status} after {args.timeout:g}s", EXIT_TIMEOUT)
        time.sleep(args.interval)
        run = _load(args.store, args.run_id)
    if not tty:
        print("\n".join(render_run(run, time.time(), width=_width(), owner=pid)), flush=True)
    return 0 if run.status == "completed" else 1


def _cmd_signal(args: argparse.Namespace) -> int:
    payload = None if args.payload is None else parse_json(args.payload, "PAYLOAD_JSON")
    command = {"cmd": "signal", "run_id": args.run_id, "name": args.name, "payload": payload, "key": args.key}
    return send_command(args.store, command, args.wait, sys.stdout)


def _cmd_cancel(args: argparse.Namespace) -> int:
    return send_command(args.store, {"cmd": "cancel", "run_id": args.run_id}, args.wait, sys.stdout)


def _write_output(path: str, text: str) -> None:
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise CliError(f"cannot write {path}: no folder {folder}", EXIT_USAGE)
    write_atomic(os.path.abspath(path), text.encode("utf-8"))


def _cmd_trace(args: argparse.Namespace) -> int:
    run = _load(args.store, args.run_id)
    timeline = build_timeline(run, time.time())
    _write_output(args.output, dump_trace(timeline))
    events = sum(len(track.slices) for track in timeline.tracks)
    print(f"wrote {args.output}: {events} slices on {len(timeline.tracks)} tracks (open in ui.perfetto.dev)")
    return 0


def _cmd_timeline(args: argparse.Namespace) -> int:
    run = _load(args.store, args.run_id)
    timeline = build_timeline(run, time.time())
    _write_output(args.output, render_html(timeline))
    print(f"wrote {args.output}: {len(run.steps)} steps on {len(timeline.tracks)} rows")
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    progress = open(os.devnull, "w") if args.quiet else sys.stderr  # noqa: SIM115 (closed below)
    try:
        status, result = run_workflow(args.store, args.target, args.args, args.run_id, args.timeout, progress)
    finally:
        if progress is not sys.stderr:
            progress.close()
    print(json.dumps(result, default=repr))
    return status


def _cmd_backup(args: argparse.Namespace) -> int:
    return backup(args.store, args.dest, sys.stdout)


# -- entry point -------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    """Run ``treadle`` with ``argv`` (default: the process's arguments); returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except CliError as exc:
        return _fail(str(exc), exc.code)
    except TreadleError as exc:
        return _fail(str(exc), 1)
    except KeyboardInterrupt:
        return _fail("interrupted", 130)
    except BrokenPipeError:
        # The reader went away (`treadle runs | head`): not an error; silence the final flush.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    except OSError as exc:
        return _fail(f"{exc.strerror or exc}{f': {exc.filename}' if exc.filename else ''}", 1)
    except Exception as exc:
        if os.environ.get("TREADLE_DEBUG"):
            traceback.print_exc()
        return _fail(f"unexpected {type(exc).__name__}: {exc} (TREADLE_DEBUG=1 shows the traceback)", 1)


def _fail(message: str, code: int) -> int:
    print(f"treadle: {' '.join(message.split())}", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
