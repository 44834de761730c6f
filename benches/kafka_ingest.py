"""End-to-end Kafka ingest: events/s of the daemon against tansu, and its peak RSS.

    python3 benches/kafka_ingest.py [--events 1000000] [--partitions 3]
        [--bin target/release/pullstats] [--tansu ~/.cargo/bin/tansu]
        [--s3-python VENV/bin/python]

Starts a tansu broker (in memory) on a free loopback port, creates the topic,
generates the events with `pullstats gen` and sends them with `pullstats
produce` (keyed by client IP), then starts the daemon on the full topic and
times it from process start until the table's commits record every offset of
every partition (read from the Delta log's commit metadata, so the check
itself costs nothing). Peak RSS is the daemon's VmHWM. The reference is
`pullstats read-topic`, a bare librdkafka consumer with the daemon's fetch
settings that reads the same topic and does nothing else, timed the same
way (process start to last message). Prints one table.

With --s3-python (a Python with moto, e.g. the venv `.ci/test` makes), the
same run goes a second time into a table in S3 (moto's server on a loopback
port, `tests/s3/s3_server.py`), and the table has both rows and their ratio.
Each row also gives the daemon's commit latency p50 and p99, interpolated
from its `pullstats_commit_seconds` histogram as Prometheus'
`histogram_quantile` does. Into S3, the end is seen by polling `pullstats
info` once a second (up to a second late).
"""
import argparse
import glob
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), 0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    sys.exit(f"the broker did not listen on {port}")


def status_kib(pid, field):
    """A `/proc/PID/status` field in KiB (0 once the process is gone)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def peak_rss_kib(pid):
    return status_kib(pid, "VmHWM")


class CommittedOffsets:
    """Next offset per partition, from the pulls table's commit metadata."""

    def __init__(self, table):
        self.log = os.path.join(table, "_delta_log")
        self.seen = set()
        self.next = {}

    def total(self):
        for path in sorted(glob.glob(os.path.join(self.log, "*.json"))):
            if path in self.seen:
                continue
            self.seen.add(path)
            with open(path) as f:
                for line in f:
                    info = json.loads(line).get("commitInfo")
                    parts = ((info or {}).get("pullstats") or {}).get("partitions") or {}
                    for p, v in parts.items():
                        self.next[p] = max(self.next.get(p, 0), v["next_offset"])
        return sum(self.next.values())


class InfoOffsets:
    """Next offset per partition of a table anywhere, from `pullstats info`."""

    def __init__(self, bin_path, table, env):
        self.cmd = [bin_path, "info", "--format", "json", "--table", table]
        self.env = env
        self.last = 0.0
        self.value = 0

    def total(self):
        if time.time() - self.last >= 1.0:
            self.last = time.time()
            out = subprocess.run(self.cmd, env=self.env, capture_output=True, text=True)
            if out.returncode == 0:
                pulls = json.loads(out.stdout)[0]
                self.value = sum(k["next_offset"] or 0 for k in pulls["kafka"])
        return self.value


def quantile(q, buckets):
    """histogram_quantile over cumulative (upper bound, count) buckets."""
    total = buckets[-1][1]
    if total == 0:
        return float("nan")
    rank = q * total
    lower, below = 0.0, 0
    for bound, count in buckets:
        if count >= rank:
            if bound == float("inf"):
                return lower
            return lower + (bound - lower) * (rank - below) / max(count - below, 1)
        lower, below = bound, count
    return lower


def commit_latency(metrics_port):
    text = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).read().decode()
    buckets = []
    for line in text.splitlines():
        if line.startswith("pullstats_commit_seconds_bucket{"):
            le = line.split('le="')[1].split('"')[0]
            buckets.append((float("inf") if le == "+Inf" else float(le), int(float(line.split()[-1]))))
    buckets.sort()
    return quantile(0.5, buckets), quantile(0.99, buckets), buckets[-1][1] if buckets else 0


class S3Server:
    """moto's S3 server on a loopback port, with one bucket `bench`."""

    def __init__(self, python, work):
        self.port = free_port()
        self.proc = subprocess.Popen([python, "tests/s3/s3_server.py", str(self.port)], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=open(os.path.join(work, "s3.log"), "w"))
        if self.proc.stdout.readline().strip() != b"ready":
            sys.exit("the S3 server did not start")
        req = urllib.request.Request(f"http://127.0.0.1:{self.port}/bench", method="PUT")
        urllib.request.urlopen(req, timeout=10).read()
        self.options = (f"AWS_ENDPOINT_URL=http://127.0.0.1:{self.port},AWS_ALLOW_HTTP=true,AWS_REGION=us-east-1,"
                        "AWS_ACCESS_KEY_ID=bench,AWS_SECRET_ACCESS_KEY=bench")

    def stop(self):
        self.proc.stdin.close()
        self.proc.wait(timeout=30)


def run(bin_path, tansu, events_n, partitions=3, flush_interval="2s", timeout=1800, s3_python=None):
    """One run (a second one into S3 with `s3_python`); returns a list of
    dicts of what was measured, one per table."""
    env = dict(os.environ, PULLSTATS_IP_HASH_KEY="bench", RUST_LOG="warn")
    work = tempfile.mkdtemp(prefix="pullstats-kafka-")
    port = free_port()
    url = f"tcp://127.0.0.1:{port}"
    broker_log = open(os.path.join(work, "broker.log"), "w")
    broker = subprocess.Popen([tansu, "broker", "--listener-url", url, "--advertised-listener-url", url,
                               "--storage-engine", "memory://tansu/"], stdout=broker_log, stderr=broker_log, cwd=work)
    daemon = None
    try:
        wait_port(port)
        subprocess.run([tansu, "topic", "create", "--broker", url, "--partitions", str(partitions),
                        "events"], check=True, stdout=subprocess.DEVNULL)
        subprocess.run([tansu, "topic", "create", "--broker", url, "--partitions", "1",
                        "events.dlq"], check=True, stdout=subprocess.DEVNULL)
        events = os.path.join(work, "events.jsonl")
        subprocess.run([bin_path, "gen", "-q", "--events", str(events_n), "--days", "7", "--output", events],
                       check=True, env=env)
        t = time.perf_counter()
        subprocess.run([bin_path, "produce", "--brokers", f"127.0.0.1:{port}", "--topic", "events",
                        "--from-file", events], check=True, env=env, stdout=subprocess.DEVNULL)
        produce_s = time.perf_counter() - t
        os.remove(events)

        t = time.perf_counter()
        subprocess.run([bin_path, "read-topic", "--brokers", f"127.0.0.1:{port}", "--topic", "events",
                        "--messages", str(events_n)], check=True, env=env, stdout=subprocess.DEVNULL)
        bare_s = time.perf_counter() - t

        results = []
        stores = [("local", None)] + ([("s3", S3Server(s3_python, work))] if s3_python else [])
        for name, s3 in stores:
            denv = dict(env, PULLSTATS_STORAGE_OPTIONS=s3.options) if s3 else env
            table = "s3://bench/pulls" if s3 else os.path.join(work, "pulls")
            metrics_port = free_port()
            daemon_log = open(os.path.join(work, f"daemon-{name}.log"), "w")
            t = time.perf_counter()
            daemon = subprocess.Popen([bin_path, "ingest", "--brokers", f"127.0.0.1:{port}", "--topic", "events",
                                       "--group", f"bench-{name}", "--table", table, "--idle-close", "3s",
                                       "--flush-interval", flush_interval,
                                       "--metrics-addr", f"127.0.0.1:{metrics_port}"],
                                      env=denv, stdout=daemon_log, stderr=daemon_log)
            offsets = InfoOffsets(bin_path, table, denv) if s3 else CommittedOffsets(table)
            peak = anon = 0
            while offsets.total() < events_n:
                peak = max(peak, peak_rss_kib(daemon.pid))
                anon = max(anon, status_kib(daemon.pid, "RssAnon"))
                if daemon.poll() is not None:
                    sys.exit(f"the daemon exited with {daemon.returncode}; see {work}/daemon-{name}.log")
                if time.perf_counter() - t > timeout:
                    sys.exit(f"timed out; see {work}/daemon-{name}.log")
                time.sleep(0.05)
            ingest_s = time.perf_counter() - t
            peak = max(peak, peak_rss_kib(daemon.pid))
            p50, p99, commits = commit_latency(metrics_port)
            daemon.send_signal(signal.SIGTERM)
            rc = daemon.wait(timeout=60)
            actions = subprocess.run([bin_path, "sql", "--format", "csv", "--table", table,
                                      "SELECT count(*) FROM pulls"], check=True, env=denv, capture_output=True,
                                     text=True).stdout.split()[-1]
            if s3:
                s3.stop()
            results.append(dict(store=name, events=events_n, partitions=partitions, flush_interval=flush_interval,
                                produce_s=produce_s, bare_s=bare_s, ingest_s=ingest_s, peak_mib=peak / 1024,
                                anon_mib=anon / 1024, actions=int(actions), exit=rc, work=work,
                                commit_p50=p50, commit_p99=p99, commits=commits))
    finally:
        if daemon is not None and daemon.poll() is None:
            daemon.kill()
        broker.kill()
        broker.wait()
    return results


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--partitions", type=int, default=3)
    ap.add_argument("--bin", default="target/release/pullstats")
    ap.add_argument("--tansu", default=os.path.expanduser("~/.cargo/bin/tansu"))
    ap.add_argument("--timeout", type=float, default=1800)
    ap.add_argument("--flush-interval", default="2s",
                    help="the daemon's commit interval; the default 30 s would make the tail of the run wait for it")
    ap.add_argument("--s3-python", help="a Python with moto: run a second time into a table in S3 (moto's server)")
    args = ap.parse_args()
    results = run(args.bin, args.tansu, args.events, args.partitions, args.flush_interval, args.timeout,
                  args.s3_python)
    print("| table | events | partitions | flush interval | produce | bare consumer | daemon end to end | "
          "daemon / bare | vs local | commit p50 / p99 (commits) | peak RSS | actions | exit |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    local_s = results[0]["ingest_s"]
    for r in results:
        n = r["events"]
        print(f"| {r['store']} | {n:,} | {r['partitions']} | {r['flush_interval']} | {r['produce_s']:.1f} s | "
              f"{r['bare_s']:.1f} s = {n / r['bare_s']:,.0f}/s | {r['ingest_s']:.1f} s = {n / r['ingest_s']:,.0f}/s | "
              f"{r['bare_s'] / r['ingest_s']:.2f} | {local_s / r['ingest_s']:.2f} | "
              f"{r['commit_p50'] * 1000:.0f} / {r['commit_p99'] * 1000:.0f} ms ({r['commits']}) | "
              f"{r['peak_mib']:.0f} MiB | {r['actions']:,} | {r['exit']} |")
    print(f"(work dir {results[0]['work']})")


if __name__ == "__main__":
    main()
