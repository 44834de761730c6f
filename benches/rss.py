"""Peak RSS and rates of file ingest and exports at two input sizes (10x apart).

    python3 benches/rss.py [--events 1000000 10000000] [--bin target/release/pullstats]

For each size: `pullstats gen` over 28 days, then `pullstats ingest
--from-file` into a fresh table, then a raw export of one week and a summary
export of the month (CSV to /dev/null). Each command's peak RSS is the
kernel's ru_maxrss for the process (os.wait4), its time the wall clock.
Prints one table. Issue 7 asks that peak RSS stay flat as input grows 10x.
"""
import argparse
import os
import shutil
import subprocess
import tempfile
import time


def measure(cmd, env, stdout=subprocess.DEVNULL):
    t = time.perf_counter()
    p = subprocess.Popen(cmd, env=env, stdout=stdout, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(p.pid, 0)
    secs = time.perf_counter() - t
    err = p.stderr.read().decode(errors="replace")
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{err}")
    return secs, usage.ru_maxrss / 1024  # MiB


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, nargs="+", default=[1_000_000, 10_000_000])
    ap.add_argument("--bin", default="target/release/pullstats")
    args = ap.parse_args()
    env = dict(os.environ, PULLSTATS_IP_HASH_KEY="bench", RUST_LOG="warn")
    rows = []
    for n in args.events:
        work = tempfile.mkdtemp(prefix="pullstats-rss-")
        try:
            events = os.path.join(work, "events.jsonl")
            table = os.path.join(work, "pulls")
            subprocess.run([args.bin, "gen", "--events", str(n), "--days", "28", "--start", "2026-11-02",
                            "-q", "--output", events], check=True, env=env)
            ingest = measure([args.bin, "ingest", "-q", "--no-progress", "--from-file", events, "--table", table], env)
            raw = measure([args.bin, "export", "--table", table, "--view", "raw", "--week", "2026-W46"], env)
            summary = measure([args.bin, "export", "--table", table, "--view", "summary", "--month", "2026-11"],
                              env)
            rows.append((n, ingest, raw, summary))
        finally:
            shutil.rmtree(work, ignore_errors=True)
    print("| events | ingest | ingest requests/s | ingest peak RSS | raw export, a week | its peak RSS | summary export, the month | its peak RSS |")
    print("|---|---|---|---|---|---|---|---|")
    for n, (it, im), (rt, rm), (st, sm) in rows:
        print(f"| {n:,} | {it:.1f} s | {n / it:,.0f} | {im:.0f} MiB | {rt:.2f} s | {rm:.0f} MiB | {st:.2f} s | {sm:.0f} MiB |")


if __name__ == "__main__":
    main()
