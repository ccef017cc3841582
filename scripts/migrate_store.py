"""Bring a result store's records up to the current run spec (`python scripts/migrate_store.py STORE`).

Records written before `threads` became a field of the run spec ran with the torch threads their host
recorded (`host.cpu_threads`); the migration writes that into their spec and moves each run to the id the
current code computes for it, so a resumed grid finds them and the leaderboard groups them with newer runs.
Nothing else in a record changes.  Prints what it moved; a second pass moves nothing.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from fairfacebench.spec import RunSpec
from fairfacebench.store import RECORD


def migrate(store: Path) -> list[tuple[str, str]]:
    moved = []
    for record_path in sorted(store.glob(f"*/{RECORD}")):
        record = json.loads(record_path.read_text())
        spec = record["spec"]
        if "threads" in spec:
            continue
        spec["threads"] = int((record.get("host") or {}).get("cpu_threads") or 1)
        run = RunSpec(**spec)
        old, new = record_path.parent.name, run.run_id
        record.update(run_id=new, comparison_id=run.comparison_id, migrated={"from_run_id": old, "added": ["threads"]})
        record_path.write_text(json.dumps(record, indent=1))
        if new != old:
            os.rename(record_path.parent, store / new)
        moved.append((old, new))
    return moved


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("store", type=Path)
    for old, new in migrate(p.parse_args().store):
        print(f"{old} -> {new}")


if __name__ == "__main__":
    main()
