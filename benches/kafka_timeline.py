"""Where the streaming daemon's seconds go: one Kafka run, its metrics polled.

    python3 benches/kafka_timeline.py [--bin target/release/pullstats] [--events 1000000]
        [--flush-interval 2s]

tansu (in memory) gets a topic of 3 partitions and `--events` generated
events; the bare consumer (`pullstats read-topic`) reads them once, then the
daemon ingests them while its /metrics is polled every 20 ms. It prints when
the first message was consumed, the first commit landed, half and all of the
messages were read, and when the table's committed offsets covered every
event, next to the bare consumer's time.
"""
import argparse
import os
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import kafka_ingest as k  # noqa: E402


def metric(port, name):
    """The sum of a metric's series; None while /metrics does not answer."""
    try:
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=1).read().decode()
    except OSError:
        return None
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith(name + " ") or line.startswith(name + "{"))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", default="target/release/pullstats")
    ap.add_argument("--tansu", default=os.path.expanduser("~/.cargo/bin/tansu"))
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--flush-interval", default="2s")
    ap.add_argument("--timeout", type=float, default=600)
    args = ap.parse_args()
    env = dict(os.environ, PULLSTATS_IP_HASH_KEY="bench", RUST_LOG="warn")
    work = tempfile.mkdtemp(prefix="pullstats-timeline-")
    port = k.free_port()
    url = f"tcp://127.0.0.1:{port}"
    broker = subprocess.Popen([args.tansu, "broker", "--listener-url", url, "--advertised-listener-url", url,
                               "--storage-engine", "memory://tansu/"], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, cwd=work)
    daemon = None
    try:
        k.wait_port(port)
        for topic, partitions in (("events", "3"), ("events.dlq", "1")):
            subprocess.run([args.tansu, "topic", "create", "--broker", url, "--partitions", partitions, topic],
                           check=True, stdout=subprocess.DEVNULL)
        events = os.path.join(work, "events.jsonl")
        subprocess.run([args.bin, "gen", "-q", "--events", str(args.events), "--days", "7", "--output", events],
                       check=True, env=env)
        subprocess.run([args.bin, "produce", "--brokers", f"127.0.0.1:{port}", "--topic", "events",
                        "--from-file", events], check=True, env=env, stdout=subprocess.DEVNULL)
        os.remove(events)
        t = time.perf_counter()
        subprocess.run([args.bin, "read-topic", "--brokers", f"127.0.0.1:{port}", "--topic", "events",
                        "--messages", str(args.events)], check=True, env=env, stdout=subprocess.DEVNULL)
        bare = time.perf_counter() - t
        metrics_port = k.free_port()
        table = os.path.join(work, "pulls")
        t = time.perf_counter()
        daemon = subprocess.Popen([args.bin, "ingest", "--brokers", f"127.0.0.1:{port}", "--topic", "events",
                                   "--group", "timeline", "--table", table, "--idle-close", "3s",
                                   "--flush-interval", args.flush_interval,
                                   "--metrics-addr", f"127.0.0.1:{metrics_port}"],
                                  env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        offsets = k.CommittedOffsets(table)
        marks = {}
        while offsets.total() < args.events:
            now = time.perf_counter() - t
            if now > args.timeout or daemon.poll() is not None:
                sys.exit(f"the daemon did not commit every event (see {work})")
            read = metric(metrics_port, "pullstats_messages_total") or 0
            commits = metric(metrics_port, "pullstats_commits_total") or 0
            for name, reached in (("first message", read > 0), ("first commit", commits > 0),
                                  ("half read", read >= args.events / 2), ("all read", read >= args.events)):
                if reached and name not in marks:
                    marks[name] = now
            time.sleep(0.02)
        marks["all committed"] = time.perf_counter() - t
        print(f"{args.events:,} events, flush {args.flush_interval}: bare consumer {bare:.2f} s; daemon "
              + ", ".join(f"{name} {s:.2f} s" for name, s in marks.items())
              + f"; daemon / bare consumer rate {bare / marks['all committed']:.2f}")
    finally:
        if daemon is not None and daemon.poll() is None:
            daemon.terminate()
            daemon.wait(timeout=60)
        broker.kill()
        broker.wait()


if __name__ == "__main__":
    main()
