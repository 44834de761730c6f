"""Opens a pullstats table with an independent Delta reader (the `deltalake`
Python package) and checks what it sees. Run by .ci/run:

    python3 tests/delta_reader.py TABLE_DIR EXPECTED_ROWS

Exit 0 when the table is a valid Delta table with the pulls schema, the
action_day partitioning and EXPECTED_ROWS rows; exit 1 with a message when not.
"""
import json
import os
import sys

from deltalake import DeltaTable, QueryBuilder


def main() -> int:
    path, expected = sys.argv[1], int(sys.argv[2])
    # A table in an object store: its endpoint and credentials from the
    # environment the test sets (AWS_ENDPOINT_URL, AWS_ALLOW_HTTP, …).
    options = {k: v for k, v in os.environ.items() if k.startswith("AWS_")}
    table = DeltaTable(path, storage_options=options or None)
    columns = [f.name for f in table.schema().fields]
    with open("schemas/table.json", encoding="utf-8") as f:
        documented = [c["name"] for c in json.load(f)["columns"]]
    problems = []
    if columns != documented:
        problems.append(f"columns {columns} != schemas/table.json {documented}")
    if table.metadata().partition_columns != ["action_day"]:
        problems.append(f"partition columns {table.metadata().partition_columns}")
    batches = (
        QueryBuilder()
        .register("pulls", table)
        .execute("SELECT count(*) AS n, count(DISTINCT action_day) AS days FROM pulls")
        .read_all()
    )
    rows = batches.column("n")[0].as_py()
    days = batches.column("days")[0].as_py()
    if rows != expected:
        problems.append(f"{rows} rows, expected {expected}")
    print(
        f"deltalake {sys.modules['deltalake'].__version__}: version {table.version()}, "
        f"{len(table.file_uris())} files, {rows} rows over {days} days"
    )
    for p in problems:
        print(f"delta_reader: {p}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
