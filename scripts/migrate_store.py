"""Bring a result store's records to the current record schema (`python scripts/migrate_store.py STORE...`).

Every record is read through the store, which migrates older schemas (`record.migrate`), and written back in
the current schema with absolute paths published as their last part (`record.published`): a committed record
does not carry its author's file system.  Only `record.json` is replaced (atomically); predictions stay as they
are.  A run whose stored id is not the one the current code computes for its spec (records written before
`threads` was part of the spec) moves to that id, so a resumed grid finds it.  Each rewritten record notes what
the migration did under `migrated`; prints one line per changed run, and a second pass changes nothing.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from fairfacebench.record import RECORD_SCHEMA, RunRecord
from fairfacebench.store import RECORD, ResultStore, record_json


def current_id(store: ResultStore, record: RunRecord) -> str:
    """Move a run to the id its spec has now (refusing to overwrite another run); the id it is stored under."""
    old, new = record.run_id, record.spec.run_id
    if new == old:
        return old
    if store.path(new).exists():
        raise SystemExit(f"{store.path(old)}: its spec's run id is {new}, which the store holds too: resolve by hand")
    os.rename(store.path(old), store.path(new))
    record.run_id, record.comparison_id = new, record.spec.comparison_id
    record.migrated = {**(record.migrated or {}), "from_run_id": old}
    return new


def migrate(root: Path) -> list[str]:
    """Rewrite every record of the store at `root` that the current schema writes differently; what changed."""
    store = ResultStore(root, create=False)
    changed = []
    for record in list(store.records()):
        old = record.run_id
        run_id = current_id(store, record)
        if record_json(record) == (store.path(run_id) / RECORD).read_text():
            continue
        record.migrated = {**(record.migrated or {}), "to_schema": RECORD_SCHEMA}
        store.rewrite_record(run_id, record)
        changed.append(f"{old} -> {run_id}" if run_id != old else f"{run_id}: rewritten in schema {RECORD_SCHEMA}")
    return changed


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("stores", type=Path, nargs="+")
    for root in p.parse_args().stores:
        for line in migrate(root):
            print(f"{root}: {line}")


if __name__ == "__main__":
    main()
