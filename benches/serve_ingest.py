"""`pullstats serve` under load: envelopes/s and events/s through POST /notifications.

    python3 benches/serve_ingest.py [--events 200000] [--per-envelope 1 50]
        [--connections 64] [--direct wal no-wal] [--runs 1] [--bin target/release/pullstats]
        [--tansu ~/.cargo/bin/tansu]

`gen --format distribution` makes the events (registry notification events,
blobs included: a registry reports every request); they are cut into
envelopes of --per-envelope events (a registry sends one event per
envelope; larger ones show the per-request cost). The load generator is
`pullstats send-notifications` (Rust, hyper's client): --connections
keep-alive HTTP/1.1 connections on loopback, each sending its next envelope
once the last was answered, as a registry's endpoint queue does; it
reports each answer's latency. Each mode runs next to its reference, in the
same run:

- direct (into the table): serve from start until the last envelope is
  answered (with the write-ahead log, each answer means its events are
  synced into it; with `--no-wal`, that its commit is durable), and until
  the table holds them all (SIGTERM after the last answer: serve exits once
  its final commit is durable), against `ingest --from-file` of the same
  events. The ratio is taken on the time into the table;
- forward (into Kafka): serve until the last answer (each means Kafka
  confirmed its events), against `pullstats produce` of the same events
  into the same broker (a tansu broker in memory).

The load generator shares the machine with serve: each row gives the CPU
seconds it used. This machine's speed moves from minute to minute (a
reference alone by a third): with --runs N each row is run N times, its
reference again right before it each time (Kafka's on a fresh broker), and
the run with the median ratio is shown, with the range of the N ratios.
Prints one table.
"""
import argparse
import contextlib
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import kafka_ingest  # noqa: E402

ENV = dict(os.environ, PULLSTATS_IP_HASH_KEY="bench", RUST_LOG="warn")


def envelopes(path, per):
    """The bodies, in file order: `per` events each."""
    events = []
    with open(path, "rb") as f:
        for line in f:
            events.extend(json.loads(line)["events"])
    return [json.dumps({"events": events[i:i + per]}, separators=(",", ":")).encode()
            for i in range(0, len(events), per)]


def send(bin_path, port, bodies_file, connections, token_file):
    """Sends every body with `pullstats send-notifications`; returns its
    summary (JSON) and the CPU seconds it used."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = subprocess.run([bin_path, "send-notifications", "--url", f"http://127.0.0.1:{port}/notifications",
                          "--token-file", token_file, "--from-file", bodies_file,
                          "--connections", str(connections), "--json"],
                         check=True, env=ENV, capture_output=True, text=True).stdout
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return json.loads(out), cpu


def print_table(header, rows):
    """A Markdown table, as README carries them."""
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for r in rows:
        print("| " + " | ".join(r) + " |")


def start_serve(bin_path, work, table, tokens, extra):
    port = kafka_ingest.free_port()
    log = open(os.path.join(work, "serve.log"), "a")
    p = subprocess.Popen([bin_path, "serve", "--table", table, "--tokens", tokens, "--listen",
                          f"127.0.0.1:{port}", "--max-connections", "1024", *extra],
                         env=ENV, stdout=log, stderr=log)
    kafka_ingest.wait_port(port)
    return p, port


def stop(p):
    p.terminate()
    if p.wait(timeout=600) != 0:
        sys.exit(f"serve exited with {p.returncode}")


def timed(cmd):
    """Seconds `cmd` took (its output discarded)."""
    t = time.perf_counter()
    subprocess.run(cmd, check=True, env=ENV, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t


@contextlib.contextmanager
def broker(tansu, work):
    """A tansu broker in memory with the topics the forward rows use;
    yields its address."""
    port = kafka_ingest.free_port()
    url = f"tcp://127.0.0.1:{port}"
    log = open(os.path.join(work, "broker.log"), "a")
    p = subprocess.Popen([tansu, "broker", "--listener-url", url, "--advertised-listener-url", url,
                          "--storage-engine", "memory://tansu/"], stdout=log, stderr=log, cwd=work)
    try:
        kafka_ingest.wait_port(port)
        for topic, parts in (("produced", 3), ("forwarded", 3), ("forwarded.dlq", 1)):
            subprocess.run([tansu, "topic", "create", "--broker", url, "--partitions", str(parts), topic],
                           check=True, stdout=subprocess.DEVNULL)
        yield f"127.0.0.1:{port}"
    finally:
        p.kill()
        p.wait()
        log.close()


def serve_once(args, work, tokens, token_file, mode, extra, per, bodies_file, count, ref_name, ref_s):
    """One posting of every body; the row's figures, and its ratio."""
    table = os.path.join(work, f"{mode.split()[0]}-{per}")
    t = time.perf_counter()
    p, port = start_serve(args.bin, work, table, tokens, extra)
    sent, client_cpu = send(args.bin, port, bodies_file, args.connections, token_file)
    answered = time.perf_counter() - t
    stop(p)
    stopped = time.perf_counter() - t
    if sent["envelopes"] != count or set(sent["statuses"]) != {"200"}:
        sys.exit(f"serve {mode}: not every envelope was answered 200: {sent}")
    if mode.startswith("direct"):
        # The time into the table: until the final commit.
        figure = (f"{count / answered:,.0f} envelopes/s answered ({answered:.1f} s); "
                  f"{args.events / stopped:,.0f} events/s into the table ({stopped:.1f} s)")
        total = stopped
    else:
        figure = (f"{count / answered:,.0f} envelopes/s, "
                  f"{args.events / answered:,.0f} events/s ({answered:.1f} s)")
        total = answered
    latency = sent["latency_ms"]
    shutil.rmtree(table, ignore_errors=True)
    shutil.rmtree(table + ".rejected", ignore_errors=True)
    return ref_s / total, (f"{figure}; load generator {client_cpu:.2f} CPU-s",
                           f"{ref_name} {args.events / ref_s:,.0f} events/s ({ref_s:.1f} s)",
                           f"p50 {latency['p50']:.1f} ms, p99 {latency['p99']:.1f} ms")


def run(args):
    """The rows: each mode and envelope size next to its reference, run
    --runs times (each time the reference right before serve, Kafka's on a
    fresh broker); the median run's figures, with the range of the ratios."""
    work = tempfile.mkdtemp(prefix="pullstats-serve-")
    events = os.path.join(work, "events.jsonl")
    subprocess.run([args.bin, "gen", "-q", "--events", str(args.events), "--format", "distribution",
                    "--days", "7", "--output", events], check=True, env=ENV)
    tokens = os.path.join(work, "tokens.toml")
    token_file = os.path.join(work, "token")
    with open(token_file, "w") as f:
        subprocess.run([args.bin, "token", "create", "--tokens", tokens, "--name", "bench", "--role", "receive"],
                       check=True, env=ENV, stdout=f, stderr=subprocess.DEVNULL)
    bodies = {}
    for per in args.per_envelope:
        cut = envelopes(events, per)
        path = os.path.join(work, f"bodies-{per}.jsonl")
        with open(path, "wb") as f:
            f.writelines(b + b"\n" for b in cut)
        bodies[per] = (path, len(cut))
    direct = [(f"direct{'' if d == 'wal' else ' --no-wal'}", [] if d == "wal" else ["--no-wal"]) for d in args.direct]
    results = {}  # (mode, per) -> [(ratio, figures)], in run order
    try:
        for _ in range(args.runs):
            if direct:
                reference = os.path.join(work, "reference")
                ingest_s = timed([args.bin, "ingest", "-q", "--no-progress", "--from-file", events,
                                  "--table", reference])
                shutil.rmtree(reference, ignore_errors=True)
                shutil.rmtree(reference + ".rejected", ignore_errors=True)
                for per in args.per_envelope:
                    for mode, extra in direct:
                        results.setdefault((mode, per), []).append(serve_once(
                            args, work, tokens, token_file, mode, extra, per, *bodies[per],
                            "ingest --from-file", ingest_s))
            with broker(args.tansu, work) as brokers:
                produce_s = timed([args.bin, "produce", "--brokers", brokers, "--topic", "produced",
                                   "--from-file", events])
                for per in args.per_envelope:
                    results.setdefault(("forward", per), []).append(serve_once(
                        args, work, tokens, token_file, "forward", ["--brokers", brokers, "--topic", "forwarded"],
                        per, *bodies[per], "produce", produce_s))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    rows = []
    for per in args.per_envelope:
        for mode, _ in [*direct, ("forward", None)]:
            runs = sorted(results[(mode, per)], key=lambda r: r[0])
            ratio, (figure, reference, latency) = runs[len(runs) // 2]
            spread = "" if len(runs) == 1 else f" (median of {len(runs)}: {runs[0][0]:.2f}–{runs[-1][0]:.2f})"
            label = f"{args.events:,} events, {per}/envelope ({bodies[per][1]:,}), {args.connections} connections"
            rows.append((f"serve {mode}", label, figure, reference, f"{ratio:.2f} of the rate{spread}", latency))
    return rows


def parser():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", default="target/release/pullstats")
    ap.add_argument("--tansu", default=os.path.expanduser("~/.cargo/bin/tansu"))
    ap.add_argument("--events", type=int, default=200_000)
    ap.add_argument("--per-envelope", type=int, nargs="+", default=[1, 50])
    ap.add_argument("--connections", type=int, default=64)
    ap.add_argument("--direct", nargs="*", choices=["wal", "no-wal"], default=["wal"],
                    help="direct mode with its write-ahead log, without (--no-wal: slow), or both")
    ap.add_argument("--runs", type=int, default=1,
                    help="each row this many times, its reference right before it; the median is shown")
    return ap


def main():
    args = parser().parse_args()
    if args.runs < 1:
        sys.exit("--runs must be at least 1")
    print_table(("scenario", "input", "serve", "reference", "serve / reference", "answer latency"), run(args))


if __name__ == "__main__":
    main()
