"""Summary-export time: pullstats vs DuckDB over the same Parquet files.

    python3 benches/compare_duckdb.py [--events N] [--bin target/release/pullstats] [--runs 3]

Generates N events with `pullstats gen`, ingests them, then times, for the
month and for one ISO week, `pullstats export --view summary` (the whole
command: process start, Delta log, query, CSV out) against DuckDB running
the same aggregation over the table's Parquet files (hive partitions) and
writing the same CSV. Both outputs are checked to hold the same rows. Prints
one table; the best of --runs is kept for each.
"""
import argparse
import csv
import os
import subprocess
import sys
import tempfile
import time

import duckdb


def timed(fn, runs):
    best = float("inf")
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def rows(path):
    with open(path, newline="", encoding="utf-8") as f:
        return sorted(tuple(r) for r in csv.reader(f))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=2_000_000)
    ap.add_argument("--bin", default="target/release/pullstats")
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    env = dict(os.environ, PULLSTATS_IP_HASH_KEY="bench", RUST_LOG="error")
    work = tempfile.mkdtemp(prefix="pullstats-duckdb-")
    events = os.path.join(work, "events.jsonl")
    table = os.path.join(work, "pulls")
    subprocess.run([args.bin, "gen", "--events", str(args.events), "--days", "30", "--start", "2026-11-01",
                    "--output", events], check=True, env=env)
    t = time.perf_counter()
    subprocess.run([args.bin, "-q", "ingest", "--from-file", events, "--table", table, "--no-progress"],
                   check=True, env=env, stdout=subprocess.DEVNULL)
    ingest_s = time.perf_counter() - t
    actions = int(subprocess.run([args.bin, "sql", "--format", "csv", "--table", table, "SELECT count(*) FROM pulls"],
                                 check=True, env=env, capture_output=True, text=True).stdout.split()[-1])
    con = duckdb.connect()
    con.execute("SET threads TO 2")
    files = os.path.join(table, "*", "*.parquet")
    spans = [("month 2026-11", ["--month", "2026-11"], "2026-11-01", "2026-12-01"),
             ("week 2026-W46", ["--week", "2026-W46"], "2026-11-09", "2026-11-16")]
    print(f"{args.events} events -> {actions} actions; ingest {ingest_s:.2f} s ({args.events / ingest_s:,.0f} events/s)")
    print(f"{'span':<16}{'pullstats s':>13}{'duckdb s':>11}{'ratio':>8}")
    for name, flags, start, end in spans:
        ours = os.path.join(work, "ours.csv")
        theirs = os.path.join(work, "theirs.csv")
        sql = f"""
          SELECT namespace, repository, reference,
                 count(DISTINCT ip_hash) AS unique_ip_count,
                 count(*) FILTER (WHERE action = 'pull_by_tag') AS pull_by_tag,
                 count(*) FILTER (WHERE action = 'pull_by_digest') AS pull_by_digest,
                 count(*) FILTER (WHERE action = 'version_check') AS version_check,
                 max(owner) AS owner
          FROM read_parquet('{files}', hive_partitioning = true)
          WHERE action_day >= '{start}' AND action_day < '{end}'
          GROUP BY 1, 2, 3 ORDER BY 1, 2, 3"""
        ours_s = timed(lambda: subprocess.run([args.bin, "export", "--table", table, "--view", "summary", *flags,
                                               "--output", ours], check=True, env=env,
                                              stderr=subprocess.DEVNULL), args.runs)
        duck_s = timed(lambda: con.sql(sql).write_csv(theirs), args.runs)
        if rows(ours) != rows(theirs):
            sys.exit(f"{name}: pullstats and DuckDB disagree ({ours} vs {theirs})")
        print(f"{name:<16}{ours_s:>13.3f}{duck_s:>11.3f}{ours_s / duck_s:>8.2f}")


if __name__ == "__main__":
    main()
