"""End-to-end Kafka ingest: events/s of the daemon against tansu, and its peak RSS.

    python3 benches/kafka_ingest.py [--events 1000000] [--partitions 3]
        [--bin target/release/pullstats] [--tansu ~/.cargo/bin/tansu]

Starts a tansu broker (in memory) on a free loopback port, creates the topic,
generates the events with `pullstats gen` and sends them with `pullstats
produce` (keyed by client IP), then starts the daemon on the full topic and
times it from process start until the table's commits record every offset of
every partition (read from the Delta log's commit metadata, so the check
itself costs nothing). Peak RSS is the daemon's VmHWM. The reference is
`pullstats read-topic`, a bare librdkafka consumer with the daemon's fetch
settings that reads the same topic and does nothing else, timed the same
way (process start to last message). Prints one table.
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


def run(bin_path, tansu, events_n, partitions=3, flush_interval="2s", timeout=1800):
    """One run; returns a dict of what was measured."""
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

        table = os.path.join(work, "pulls")
        daemon_log = open(os.path.join(work, "daemon.log"), "w")
        t = time.perf_counter()
        daemon = subprocess.Popen([bin_path, "ingest", "--brokers", f"127.0.0.1:{port}", "--topic", "events",
                                   "--group", "bench", "--table", table, "--idle-close", "3s",
                                   "--flush-interval", flush_interval],
                                  env=env, stdout=daemon_log, stderr=daemon_log)
        offsets = CommittedOffsets(table)
        peak = anon = 0
        while offsets.total() < events_n:
            peak = max(peak, peak_rss_kib(daemon.pid))
            anon = max(anon, status_kib(daemon.pid, "RssAnon"))
            if daemon.poll() is not None:
                sys.exit(f"the daemon exited with {daemon.returncode}; see {work}/daemon.log")
            if time.perf_counter() - t > timeout:
                sys.exit(f"timed out; see {work}/daemon.log")
            time.sleep(0.05)
        ingest_s = time.perf_counter() - t
        peak = max(peak, peak_rss_kib(daemon.pid))
        daemon.send_signal(signal.SIGTERM)
        rc = daemon.wait(timeout=60)
        actions = subprocess.run([bin_path, "sql", "--format", "csv", "--table", table,
                                  "SELECT count(*) FROM pulls"], check=True, env=env, capture_output=True,
                                 text=True).stdout.split()[-1]
    finally:
        if daemon is not None and daemon.poll() is None:
            daemon.kill()
        broker.kill()
        broker.wait()
    return dict(events=events_n, partitions=partitions, flush_interval=flush_interval, produce_s=produce_s,
                bare_s=bare_s, ingest_s=ingest_s, peak_mib=peak / 1024, anon_mib=anon / 1024, actions=int(actions), exit=rc, work=work)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--partitions", type=int, default=3)
    ap.add_argument("--bin", default="target/release/pullstats")
    ap.add_argument("--tansu", default=os.path.expanduser("~/.cargo/bin/tansu"))
    ap.add_argument("--timeout", type=float, default=1800)
    ap.add_argument("--flush-interval", default="2s",
                    help="the daemon's commit interval; the default 30 s would make the tail of the run wait for it")
    args = ap.parse_args()
    r = run(args.bin, args.tansu, args.events, args.partitions, args.flush_interval, args.timeout)
    n = r["events"]
    print("| events | partitions | flush interval | produce | bare consumer | daemon end to end | daemon / bare | peak RSS | actions | exit |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    print(f"| {n:,} | {r['partitions']} | {r['flush_interval']} | {r['produce_s']:.1f} s | "
          f"{r['bare_s']:.1f} s = {n / r['bare_s']:,.0f}/s | {r['ingest_s']:.1f} s = {n / r['ingest_s']:,.0f}/s | "
          f"{r['bare_s'] / r['ingest_s']:.2f} | {r['peak_mib']:.0f} MiB | {r['actions']:,} | {r['exit']} |")
    print(f"(work dir {r['work']})")


if __name__ == "__main__":
    main()
