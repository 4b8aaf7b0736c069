"""Small helpers shared by the examples (not an example itself: files starting with ``_`` are skipped).

Every example keeps its store in a fresh temporary folder that is removed at
the end, unless ``--store PATH`` is given (then the folder is kept so you can
open it again, e.g. with ``Runtime(PATH).get(run_id).history()``).
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import sys
import tempfile
from collections.abc import Iterator, Sequence


def build_parser(description: str) -> argparse.ArgumentParser:
    """The examples' common command line: ``--store PATH``."""
    parser = argparse.ArgumentParser(description=description.strip().splitlines()[0])
    parser.add_argument(
        "--store", metavar="PATH", help="keep the LMDB store in PATH instead of a temporary folder"
    )
    return parser


def parse_args(description: str, argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse the common command line (see :func:`build_parser`)."""
    return build_parser(description).parse_args(argv)


@contextlib.contextmanager
def store_folder(store: str | None, prefix: str) -> Iterator[str]:
    """Yield the store folder: ``store`` as given, or a fresh temp folder removed afterwards."""
    if store is not None:
        yield store
        return
    folder = tempfile.mkdtemp(prefix=f"treadle-{prefix}-")
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def say(text: str = "") -> None:
    """Print one line of the example's story (flushed, so it interleaves sanely with threads)."""
    print(text, flush=True)


def check(condition: bool, promise: str) -> None:
    """Exit non-zero with a message when the example does not keep its promise."""
    if not condition:
        print(f"FAILED: {promise}", file=sys.stderr, flush=True)
        raise SystemExit(1)
