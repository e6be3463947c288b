#!/usr/bin/env python3
"""Creates a SQLite file whose first MEGABYTES were written once and then freed.

    pregrow-sqlite.py PATH MEGABYTES

The pages stay in the file as free pages that SQLite reuses before it extends
the file, so a server started on it overwrites blocks that already hold data
instead of growing the file. scripts/bench-intake uses it (BENCH_PREGROWN_MB)
to measure what growing the log's file costs; docs/benchmarks.md has the figures.
"""
import os
import sqlite3
import sys

path, megabytes = sys.argv[1], int(sys.argv[2])
os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
db = sqlite3.connect(path)
db.execute("CREATE TABLE pregrow (filler BLOB)")
for _ in range(megabytes):
    db.execute("INSERT INTO pregrow VALUES (randomblob(1048576))")
db.commit()
db.execute("DROP TABLE pregrow")
db.commit()
free, pages = db.execute("PRAGMA freelist_count").fetchone()[0], db.execute("PRAGMA page_count").fetchone()[0]
db.close()
os.sync()
print(f"pregrow-sqlite: {path}: {free} of {pages} pages written and free")
