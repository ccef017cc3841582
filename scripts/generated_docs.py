"""The blocks of the README and docs that a script prints from the committed stores: rewrite them, or check them.

A block is the output of the command on its first line, up to the line that ends it:

    <!-- generated: python scripts/board_summary.py stores/utkface-v2 --intervals --defaults --no-total -->
    ...what that command prints...
    <!-- end generated -->

    python scripts/generated_docs.py README.md docs/results/utkface-v2.md          # rewrite every block
    python scripts/generated_docs.py --check README.md docs/results/utkface-v2.md  # exit 1 with a diff if stale

Commands are scripts of this repository's `scripts/` folder only, run in this process from the repository's root
(so a block reads the committed stores, never a scratch directory); a board built for one block is reused by the
next (`tables.build` is deterministic: the same store and rule give the same board).  Prose around the blocks is
left alone: a sentence that quotes a number of a block is checked by whoever writes it.  tests/test_generated_docs.py
runs `--check` on the README and docs/results, so a change of the store or of the leaderboard's code that moves a
number fails until the blocks are rewritten in the same change.
"""

from __future__ import annotations

import argparse
import contextlib
import difflib
import inspect
import io
import re
import runpy
import shlex
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from fairfacebench.leaderboard import tables

ROOT = Path(__file__).resolve().parents[1]
BLOCK = re.compile(r"^<!-- generated: (?P<command>.+?) -->\n(?P<body>.*?)^<!-- end generated -->$", re.M | re.S)


class BlockError(Exception):
    """A block whose command is not one this script runs, or that failed: the message names the file and line."""


def script_of(command: str, where: str) -> tuple[Path, list[str]]:
    """`python scripts/NAME.py ARGS` -> (the script's path, its arguments)."""
    words = shlex.split(command)
    if len(words) < 2 or words[0] != "python" or not re.fullmatch(r"scripts/[\w-]+\.py", words[1]):
        raise BlockError(
            f"{where}: '{command}' is not `python scripts/NAME.py ...`; only this repository's scripts run"
        )
    path = ROOT / words[1]
    if not path.is_file():
        raise BlockError(f"{where}: {words[1]} does not exist")
    return path, words[2:]


@contextlib.contextmanager
def shared_boards() -> Iterator[None]:
    """`tables.build` memoised while the blocks run: the scripts import it after this patch, so each board is built
    once for all blocks, however a script passes its arguments."""
    original, signature = tables.build, inspect.signature(tables.build)
    built = {}

    def build(*args: Any, **kwargs: Any) -> Any:
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()
        key = tuple((name, str(v) if isinstance(v, Path) else v) for name, v in bound.arguments.items())
        if key not in built:
            built[key] = original(*args, **kwargs)
        return built[key]

    tables.build = build
    try:
        yield
    finally:
        tables.build = original


def output_of(command: str, where: str) -> str:
    """What the command prints, run in this process from the repository's root."""
    path, args = script_of(command, where)
    out = io.StringIO()
    argv = sys.argv
    try:
        sys.argv = [str(path), *args]
        with contextlib.chdir(ROOT), contextlib.redirect_stdout(out):
            runpy.run_path(str(path), run_name="__main__")
    except SystemExit as exc:
        if exc.code not in (None, 0):
            raise BlockError(f"{where}: `{command}` exited with {exc.code}") from None
    finally:
        sys.argv = argv
    return "\n".join(line.rstrip() for line in out.getvalue().strip().splitlines())


def regenerate(text: str, name: str) -> str:
    """`text` with every block's body replaced by its command's output now."""

    def body(match: re.Match) -> str:
        where = f"{name}:{text.count(chr(10), 0, match.start()) + 1}"
        command = match["command"]
        return f"<!-- generated: {command} -->\n\n{output_of(command, where)}\n\n<!-- end generated -->"

    return BLOCK.sub(body, text)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("files", nargs="+", type=Path, help="markdown files holding generated blocks")
    p.add_argument("--check", action="store_true", help="write nothing; exit 1 with a diff if a block is stale")
    args = p.parse_args()
    stale = []
    texts = {path: path.read_text() for path in args.files}
    with_blocks = {path: text for path, text in texts.items() if BLOCK.search(text)}
    if not with_blocks:
        names = " ".join(map(str, args.files))
        raise SystemExit(f"{names}: no generated block (<!-- generated: python scripts/NAME.py ... -->)")
    with shared_boards():
        for path, text in with_blocks.items():
            try:
                new = regenerate(text, str(path))
            except BlockError as exc:
                raise SystemExit(str(exc)) from None
            if new == text:
                continue
            stale.append(path)
            if args.check:
                diff = difflib.unified_diff(
                    text.splitlines(), new.splitlines(), str(path), "generated now", lineterm=""
                )
                print("\n".join(diff))
            else:
                path.write_text(new)
                print(f"rewrote {path}")
    if args.check and stale:
        names = " ".join(map(str, stale))
        raise SystemExit(f"stale generated blocks in {names}: run `python scripts/generated_docs.py {names}`")


if __name__ == "__main__":
    main()
