"""A long-lived writer's commits: does a commit cost more as the writer ages?

    python3 benches/long_run.py [--commits 2000] [--per-envelope 10]
        [--auto-compact 30s] [--log-entries N] [--bin target/release/pullstats]

`pullstats serve --no-wal` (direct mode, answering an envelope once the
commit covering it is durable) receives envelopes of --per-envelope events
over one keep-alive connection, one at a time, so every envelope is a
commit of its own: --commits commits by one process, as a daemon or `serve`
makes over hours or days. serve's own histogram
(`pullstats_commit_seconds`, polled from /metrics) gives the mean commit
time over the first 100 commits, the reference, and over the last 100; the
ratio of the two is 1 when a commit costs the same however many came
before. The API's refresh, which rescans the days new commits touched, is
set to once an hour so that only the writer is measured. Prints one table.

With --auto-compact INTERVAL the events are dated today (UTC), the day
being written, and serve compacts beside the writer every INTERVAL
(`--auto-compact`, which merges the open day's files): the last commits
then cost what the live files left by the last pass cost.

With --log-entries N, once the first envelope is committed the table's
`_delta_log` gets N more entries, empty files whose names sort before every
version: they stand for the older versions a long log retention keeps
(every listing of the log reads them; nothing else does), as a `serve`
committing every second has 605k of them after 7 days, 2.6 million after
30. Compare builds at the same N, not the first commits with the last.
"""
import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import serve_ingest  # noqa: E402

ENV = serve_ingest.ENV
WINDOW = 100


def commit_totals(port):
    """(commits, seconds) of serve's commit histogram so far."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    values = {}
    for line in text.splitlines():
        for name in ("pullstats_commit_seconds_count", "pullstats_commit_seconds_sum"):
            if line.startswith(name + " "):
                values[name] = float(line.split()[1])
    return values.get("pullstats_commit_seconds_count", 0.0), values.get("pullstats_commit_seconds_sum", 0.0)


def mean_ms(samples, first):
    """Mean commit time (ms) over the first (or last) WINDOW commits or more,
    from the polled (commits, seconds) totals."""
    samples = sorted(set(samples))
    if first:
        start = samples[0]
        end = next((s for s in samples if s[0] - start[0] >= WINDOW), samples[-1])
    else:
        end = samples[-1]
        start = next((s for s in reversed(samples) if end[0] - s[0] >= WINDOW), samples[0])
    n = end[0] - start[0]
    return 1000 * (end[1] - start[1]) / n if n else float("nan"), int(n)


def print_series(samples):
    """The mean commit time of each successive WINDOW commits, to stderr."""
    samples = sorted(set(samples))
    start = samples[0]
    for s in samples:
        if s[0] - start[0] >= WINDOW:
            print(f"commits {int(start[0]):>6}..{int(s[0]):<6} {1000 * (s[1] - start[1]) / (s[0] - start[0]):7.1f} ms",
                  file=sys.stderr)
            start = s


def run(args):
    work = tempfile.mkdtemp(prefix="pullstats-long-")
    try:
        events = os.path.join(work, "events.jsonl")
        n_events = args.commits * args.per_envelope
        today = ["--start", time.strftime("%Y-%m-%d", time.gmtime())] if args.auto_compact else []
        subprocess.run([args.bin, "gen", "-q", "--events", str(n_events), "--format", "distribution",
                        "--days", "1", "--output", events, *today], check=True, env=ENV)
        bodies = serve_ingest.envelopes(events, args.per_envelope)
        bodies_file = os.path.join(work, "bodies.jsonl")
        first_file = os.path.join(work, "first.jsonl")
        # With --log-entries the first envelope goes alone, before them.
        rest = bodies[1:] if args.log_entries else bodies
        with open(bodies_file, "wb") as f:
            f.writelines(b + b"\n" for b in rest)
        with open(first_file, "wb") as f:
            f.write(bodies[0] + b"\n")
        tokens = os.path.join(work, "tokens.toml")
        token_file = os.path.join(work, "token")
        with open(token_file, "w") as f:
            subprocess.run([args.bin, "token", "create", "--tokens", tokens, "--name", "bench", "--role", "receive"],
                           check=True, env=ENV, stdout=f, stderr=subprocess.DEVNULL)
        table = os.path.join(work, "pulls")
        compaction = ["--auto-compact", "--auto-compact-interval", args.auto_compact] if args.auto_compact else []
        p, port = serve_ingest.start_serve(args.bin, work, table, tokens,
                                          ["--no-wal", "--refresh-interval", "1h", *compaction])
        if args.log_entries:
            # The table exists once the first envelope is answered.
            sent, _ = serve_ingest.send(args.bin, port, first_file, 1, token_file)
            assert sent["statuses"] == {"200": 1}, sent
            log = os.path.join(table, "_delta_log")
            for i in range(args.log_entries):
                open(os.path.join(log, f"{0:020}.older-{i:09}"), "wb").close()
        samples, done = [commit_totals(port)], threading.Event()

        def poll():
            while not done.wait(0.5):
                samples.append(commit_totals(port))

        poller = threading.Thread(target=poll)
        poller.start()
        t = time.perf_counter()
        try:
            sent, _ = serve_ingest.send(args.bin, port, bodies_file, 1, token_file)
        finally:
            done.set()
            poller.join()
        took = time.perf_counter() - t
        samples.append(commit_totals(port))
        serve_ingest.stop(p)
        if sent["envelopes"] != len(rest) or set(sent["statuses"]) != {"200"}:
            sys.exit(f"not every envelope was answered 200: {sent}")
        if args.series:
            print_series(samples)
        first, n_first = mean_ms(samples, True)
        last, n_last = mean_ms(samples, False)
        commits = int(samples[-1][0])
        scenario = "serve --no-wal, one envelope per commit"
        if args.auto_compact:
            scenario += f", --auto-compact every {args.auto_compact}"
        if args.log_entries:
            scenario += f", {args.log_entries:,} older log entries"
        return [(scenario,
                 f"{len(bodies):,} envelopes of {args.per_envelope} events, 1 connection",
                 f"{commits:,} commits in {took:.0f} s; last {n_last} commits {last:.1f} ms each",
                 f"first {n_first} commits {first:.1f} ms each",
                 f"{last / first:.2f} of the time")]
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", default="target/release/pullstats")
    ap.add_argument("--commits", type=int, default=2000)
    ap.add_argument("--per-envelope", type=int, default=10)
    ap.add_argument("--series", action="store_true",
                    help="also print the mean of every ~100 commits, in order, to stderr")
    ap.add_argument("--auto-compact", metavar="INTERVAL",
                    help="events dated today, serve compacting every INTERVAL (e.g. 30s)")
    ap.add_argument("--log-entries", type=int, default=0, metavar="N",
                    help="add N entries to the log after the first commit (older versions kept)")
    args = ap.parse_args()
    serve_ingest.print_table(("scenario", "input", "pullstats", "reference", "last / first"), run(args))


if __name__ == "__main__":
    main()
