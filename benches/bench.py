"""The benchmark harness: every scenario of issue 7 in one run, one table.

    python3 benches/bench.py [--bin target/release/pullstats] [--tansu ~/.cargo/bin/tansu]
        [--file-events 1000000 10000000] [--kafka-events 1000000 10000000]
        [--table-events 24000000 240000000] [--serve-events 200000] [--runs 3] [--skip kafka serve]

Each scenario runs next to its reference, in the same run, so the ratios hold
on a noisy machine:

- file ingest, at each --file-events: `pullstats ingest --from-file`
  (process start to commit) of `gen` output over 28 days, against
  `pullstats read-file`, which reads and JSON-parses the same file on one
  thread and does nothing else;
- Kafka ingest, at each --kafka-events: the daemon against tansu next to
  `pullstats read-topic`, a bare consumer (benches/kafka_ingest.py);
- queries, at each --table-events: `gen` over 205 days (2026-05-01 to
  2026-11-21) piped into `ingest`, then `compact` (days left with several
  small files are rewritten sorted, and the periods table is filled) and
  `vacuum` of the replaced files; then the month summary of 2026-10 (from
  the periods table, and scanned with --no-periods), a 17-day summary
  (2026-10-05 .. 10-21, a scan), the raw export of week 2026-W42 and the
  6-month trend by month (2026-05 to 2026-10, from the periods table),
  each `pullstats export` as a whole process (start, Delta log,
  query, CSV file) against DuckDB running the same SQL in process over the
  same Parquet files with 2 threads, writing the same CSV. The outputs are
  checked to agree (all rows for the summaries; row count and the
  namespace/repository/reference/action of every row for the raw export);
- history: a week's summary (2026-W46, scanned with --no-periods, and
  from the periods table) over a table of 12 months against the same over
  a table of 1 month, the same events per day (--history-events-per-day);
  both compacted, so the cost of the history is log replay, file listing
  and pruning;
- serve: envelopes/s and events/s through `pullstats serve`'s POST
  /notifications in direct mode against `ingest --from-file` and in forward
  mode against `produce`, with answer latencies (benches/serve_ingest.py;
  in that column instead of the RSS);
- memory: every pullstats row carries the process's peak RSS (VmHWM) and the
  most anonymous memory (RssAnon) seen; the rest is mostly the binary's code.

Queries keep the best time of --runs; the serve rows show the median of
--runs pairs (each beside its own reference run). Needs `pip install duckdb`.
"""
import argparse
import csv
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import kafka_ingest  # noqa: E402
import serve_ingest  # noqa: E402

ENV = dict(os.environ, PULLSTATS_IP_HASH_KEY="bench", RUST_LOG="warn")
TABLE_START, TABLE_DAYS = "2026-05-01", 205
RAW_COLUMNS = ("action, action_day, country, digest, http_method, host, namespace, reference, repository, tag, "
               "timestamp, type, user_agent_tool, user_agent_version, domain, owner")
COUNTS = """count(*) FILTER (WHERE action = 'pull_by_tag') AS pull_by_tag,
            count(*) FILTER (WHERE action = 'pull_by_digest') AS pull_by_digest,
            count(*) FILTER (WHERE action = 'version_check') AS version_check"""
QUERIES = [
    # (name, export flags, DuckDB SQL over {files}, how outputs are compared)
    ("month summary 2026-10", ["--view", "summary", "--month", "2026-10"],
     f"""SELECT namespace, repository, reference, count(DISTINCT ip_hash) AS unique_ip_count, {COUNTS},
               max(owner) AS owner
        FROM read_parquet('{{files}}', hive_partitioning = true)
        WHERE action_day >= '2026-10-01' AND action_day < '2026-11-01'
        GROUP BY 1, 2, 3 ORDER BY 1, 2, 3""", "rows"),
    ("month summary 2026-10, scanned", ["--view", "summary", "--month", "2026-10", "--no-periods"],
     f"""SELECT namespace, repository, reference, count(DISTINCT ip_hash) AS unique_ip_count, {COUNTS},
               max(owner) AS owner
        FROM read_parquet('{{files}}', hive_partitioning = true)
        WHERE action_day >= '2026-10-01' AND action_day < '2026-11-01'
        GROUP BY 1, 2, 3 ORDER BY 1, 2, 3""", "rows"),
    ("17-day summary 2026-10-05..21 (a scan)", ["--view", "summary", "--from", "2026-10-05", "--to", "2026-10-22"],
     f"""SELECT namespace, repository, reference, count(DISTINCT ip_hash) AS unique_ip_count, {COUNTS},
               max(owner) AS owner
        FROM read_parquet('{{files}}', hive_partitioning = true)
        WHERE action_day >= '2026-10-05' AND action_day < '2026-10-22'
        GROUP BY 1, 2, 3 ORDER BY 1, 2, 3""", "rows"),
    ("week raw export 2026-W42", ["--view", "raw", "--week", "2026-W42"],
     f"""SELECT {RAW_COLUMNS} FROM read_parquet('{{files}}', hive_partitioning = true)
        WHERE action_day >= '2026-10-12' AND action_day < '2026-10-19'
        ORDER BY timestamp, namespace, repository""", "raw"),
    ("6-month trend by month", ["--view", "trend", "--last", "6m", "--granularity", "month",
                                "--until", "2026-11-20"],
     f"""SELECT CAST(date_trunc('month', timestamp) AS DATE) AS period, namespace, repository,
               count(*) FILTER (WHERE action <> 'version_check') AS pulls, {COUNTS},
               count(DISTINCT ip_hash) AS unique_ip_count
        FROM read_parquet('{{files}}', hive_partitioning = true)
        WHERE action_day >= '2026-05-01' AND action_day < '2026-11-01'
        GROUP BY 1, 2, 3 ORDER BY 1, 2, 3""", "rows"),
]


class Rss(tuple):
    """Peak RSS and, of it, the most anonymous memory seen, in MiB."""

    def __str__(self):
        return f"{self[0]:.0f} MiB (anon {self[1]:.0f})"


def measure(cmd, stdin=None, stdout=subprocess.DEVNULL):
    """Runs a command; returns (seconds, Rss).

    The time is taken when the process exits (the main thread waits on it;
    a poll every 10 ms would round a 40 ms export to its steps). Peak RSS is
    the process's VmHWM, read every 10 ms by a thread until it exits. (Not
    ru_maxrss: Linux carries the forking parent's high-water mark into the
    child, and this script holds DuckDB's memory.) About 90 MiB of it is the
    binary's code (file-backed pages); RssAnon, the heap, is what data grows.
    """
    t = time.perf_counter()
    p = subprocess.Popen(cmd, env=ENV, stdin=stdin, stdout=stdout, stderr=subprocess.PIPE)
    peaks = [0, 0]
    done = threading.Event()

    def sample():
        while not done.is_set():
            peaks[0] = max(peaks[0], kafka_ingest.peak_rss_kib(p.pid))
            peaks[1] = max(peaks[1], kafka_ingest.status_kib(p.pid, "RssAnon"))
            done.wait(0.01)

    sampler = threading.Thread(target=sample)
    sampler.start()
    err = p.communicate()[1].decode(errors="replace")
    secs = time.perf_counter() - t
    done.set()
    sampler.join()
    if p.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{err}")
    return secs, Rss((peaks[0] / 1024, peaks[1] / 1024))


def count_actions(bin_path, table):
    out = subprocess.run([bin_path, "sql", "--format", "csv", "--table", table, "SELECT count(*) FROM pulls"],
                         check=True, env=ENV, capture_output=True, text=True).stdout
    return int(out.split()[-1])


def read_csv(path):
    with open(path, newline="", encoding="utf-8") as f:
        r = csv.reader(f)
        header = next(r, None)
        return header, list(r)


def agree(ours, theirs, how):
    (h1, a), (h2, b) = read_csv(ours), read_csv(theirs)
    if h1 != h2:
        return f"headers differ: {h1} vs {h2}"
    if how == "rows":
        return None if sorted(a) == sorted(b) else "rows differ"
    if len(a) != len(b):
        return f"{len(a)} rows vs {len(b)}"
    cols = [h1.index(c) for c in ("namespace", "repository", "reference", "action")]
    key = lambda rows: Counter(tuple(r[i] for i in cols) for r in rows)  # noqa: E731
    return None if key(a) == key(b) else "different actions"


def file_ingest(args, work, rows):
    for n in args.file_events:
        events = os.path.join(work, "events.jsonl")
        subprocess.run([args.bin, "gen", "-q", "--events", str(n), "--days", "28",
                        "--start", "2026-11-02", "--output", events], check=True, env=ENV)
        size = os.path.getsize(events) / 2**20
        ref_s, ref_rss = measure([args.bin, "read-file", events])
        table = os.path.join(work, "file-ingest")
        ours_s, ours_rss = measure([args.bin, "ingest", "-q", "--no-progress", "--from-file", events,
                                    "--table", table])
        rows.append(("file ingest, requests/s", f"{n:,} events ({size:,.0f} MiB), 28 days",
                     f"{n / ours_s:,.0f}/s ({ours_s:.2f} s)", f"read-file {n / ref_s:,.0f} lines/s ({ref_s:.2f} s)",
                     f"{ref_s / ours_s:.2f} of the rate", str(ours_rss)))
        for path in (table, table + ".rejected"):
            shutil.rmtree(path, ignore_errors=True)
        os.remove(events)


def history(args, work, rows):
    """A week's summary over 12 months of history against the same over 1 month."""
    times = {}
    for days, start in ((30, "2026-11-01"), (365, "2025-12-01")):
        table = os.path.join(work, f"history-{days}")
        n = args.history_events_per_day * days
        gen = subprocess.Popen([args.bin, "gen", "-q", "--events", str(n), "--days", str(days), "--start", start],
                               env=ENV, stdout=subprocess.PIPE)
        measure([args.bin, "ingest", "-q", "--no-progress", "--from-file", "-", "--table", table], stdin=gen.stdout)
        gen.stdout.close()
        if gen.wait() != 0:
            sys.exit("gen failed")
        measure([args.bin, "compact", "-q", "--table", table, "--today", "2026-12-01"])
        measure([args.bin, "vacuum", "-q", "--table", table, "--retention", "0s", "--force"])
        for how, extra in (("scanned", ["--no-periods"]), ("from the periods table", [])):
            best, peak = float("inf"), Rss((0.0, 0.0))
            for _ in range(args.runs):
                s, rss = measure([args.bin, "export", "--table", table, "--view", "summary", "--week", "2026-W46",
                                  "--output", os.path.join(work, "week.csv"), *extra])
                best, peak = min(best, s), Rss(map(max, peak, rss))
            times[(days, how)] = (best, peak)
        for path in (table, table + ".rejected", table + ".periods"):
            shutil.rmtree(path, ignore_errors=True)
    for how in ("scanned", "from the periods table"):
        (one, _), (twelve, rss) = times[(30, how)], times[(365, how)]
        rows.append((f"week summary 2026-W46, {how}, over 12 months of history",
                     f"{args.history_events_per_day:,} events a day, 365 days", f"{twelve:.3f} s",
                     f"over 1 month: {one:.3f} s", f"{twelve / one:.2f} of the time", str(rss)))


def kafka(args, rows):
    for n in args.kafka_events:
        r = kafka_ingest.run(args.bin, args.tansu, n)[0]
        rows.append(("Kafka ingest, events/s", f"{n:,} events, 3 partitions, flush 2 s",
                     f"{n / r['ingest_s']:,.0f}/s ({r['ingest_s']:.1f} s)",
                     f"read-topic {n / r['bare_s']:,.0f}/s ({r['bare_s']:.1f} s)",
                     f"{r['bare_s'] / r['ingest_s']:.2f} of the rate", str(Rss((r["peak_mib"], r["anon_mib"])))))
        shutil.rmtree(r["work"], ignore_errors=True)


def queries(args, work, rows):
    import duckdb

    for n in args.table_events:
        table = os.path.join(work, f"pulls-{n}")
        gen = subprocess.Popen([args.bin, "gen", "-q", "--events", str(n), "--days", str(TABLE_DAYS),
                                "--start", TABLE_START], env=ENV, stdout=subprocess.PIPE)
        build_s, build_rss = measure([args.bin, "ingest", "-q", "--no-progress", "--from-file", "-",
                                      "--table", table], stdin=gen.stdout)
        gen.stdout.close()
        if gen.wait() != 0:
            sys.exit("gen failed")
        actions = count_actions(args.bin, table)
        label = f"{actions / 1e6:.1f}M actions"
        rows.append(("table build: gen piped into ingest", f"{n:,} events → {label}, {TABLE_DAYS} days",
                     f"{n / build_s:,.0f} events/s ({build_s:.0f} s; gen is the limit)", "", "",
                     str(build_rss)))
        compact_s, compact_rss = measure([args.bin, "compact", "-q", "--table", table, "--today", "2026-11-24"])
        measure([args.bin, "vacuum", "-q", "--table", table, "--retention", "0s", "--force"])
        rows.append(("compact", label, f"{compact_s:.1f} s", "", "", str(compact_rss)))

        con = duckdb.connect()
        con.execute("SET threads TO 2")
        con.execute("SET TimeZone = 'UTC'")
        files = os.path.join(table, "action_day=*", "*.parquet")
        for name, flags, sql, how in QUERIES:
            ours, theirs = os.path.join(work, "ours.csv"), os.path.join(work, "theirs.csv")
            best, peak = float("inf"), Rss((0.0, 0.0))
            for _ in range(args.runs):
                s, rss = measure([args.bin, "export", "--table", table, *flags, "--output", ours])
                best, peak = min(best, s), Rss(map(max, peak, rss))
            duck = float("inf")
            for _ in range(args.runs):
                t = time.perf_counter()
                con.execute(f"COPY ({sql.format(files=files)}) TO '{theirs}' (HEADER, DELIMITER ',')")
                duck = min(duck, time.perf_counter() - t)
            problem = agree(ours, theirs, how)
            if problem:
                sys.exit(f"{name} at {label}: pullstats and DuckDB disagree: {problem} ({ours} vs {theirs})")
            rows.append((name, label, f"{best:.2f} s", f"DuckDB {duck:.2f} s", f"{best / duck:.2f} of the time",
                         str(peak)))
        con.close()
        for path in (table, table + ".rejected", table + ".periods"):
            shutil.rmtree(path, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", default="target/release/pullstats")
    ap.add_argument("--tansu", default=os.path.expanduser("~/.cargo/bin/tansu"))
    ap.add_argument("--file-events", type=int, nargs="+", default=[1_000_000, 10_000_000])
    ap.add_argument("--history-events-per-day", type=int, default=40_000)
    ap.add_argument("--kafka-events", type=int, nargs="+", default=[1_000_000, 10_000_000])
    ap.add_argument("--table-events", type=int, nargs="+", default=[24_000_000, 240_000_000])
    ap.add_argument("--serve-events", type=int, default=200_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--skip", nargs="*", default=[], choices=["file", "kafka", "serve", "queries", "history"])
    ap.add_argument("--work", help="scratch directory (default: a new one under $TMPDIR)")
    args = ap.parse_args()
    work = args.work or tempfile.mkdtemp(prefix="pullstats-bench-")
    os.makedirs(work, exist_ok=True)
    rows = []
    try:
        if "file" not in args.skip:
            file_ingest(args, work, rows)
        if "kafka" not in args.skip:
            kafka(args, rows)
        if "serve" not in args.skip:
            rows.extend(serve_ingest.run(serve_ingest.parser().parse_args(
                ["--bin", args.bin, "--tansu", args.tansu, "--events", str(args.serve_events),
                 "--runs", str(args.runs)])))
        if "queries" not in args.skip:
            queries(args, work, rows)
        if "history" not in args.skip:
            history(args, work, rows)
    finally:
        print("| scenario | input | pullstats | reference | pullstats / reference | pullstats peak RSS |")
        print("|---|---|---|---|---|---|")
        for r in rows:
            print("| " + " | ".join(r) + " |")
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
