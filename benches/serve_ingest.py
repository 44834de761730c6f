"""`pullstats serve` under load: envelopes/s and events/s through POST /notifications.

    python3 benches/serve_ingest.py [--events 200000] [--per-envelope 1 50]
        [--connections 64] [--direct wal no-wal] [--bin target/release/pullstats]
        [--tansu ~/.cargo/bin/tansu]

`gen --format distribution` makes the events (registry notification events,
blobs included: a registry reports every request); they are cut into
envelopes of --per-envelope events (a registry sends one event per
envelope; larger ones show the per-request cost). A load generator of this
script (asyncio, --connections keep-alive HTTP/1.1 connections on loopback,
each sending its next envelope once the last was answered, as a registry's
endpoint queue does) posts every envelope and records each answer's
latency. Each mode runs next to its reference, in the same run:

- direct (into the table): serve from start until the last envelope is
  answered (with the write-ahead log, each answer means its events are
  synced into it; with `--no-wal`, that its commit is durable), and until
  the table holds them all (SIGTERM after the last answer: serve exits once
  its final commit is durable), against `ingest --from-file` of the same
  events. The ratio is taken on the time into the table;
- forward (into Kafka): serve until the last answer (each means Kafka
  confirmed its events), against `pullstats produce` of the same events
  into the same broker (a tansu broker in memory).

The load generator's own ceiling is measured too: the same connections
against GET /healthz. A figure near it says the client, not serve, was the
limit. Prints one table.
"""
import argparse
import asyncio
import json
import os
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


async def post_all(port, bodies, connections, token, path="/notifications"):
    """Posts every body over `connections` keep-alive connections, each in
    order of its share; returns (seconds, sorted latencies)."""
    latencies = []
    next_body = iter(range(len(bodies)))

    async def worker():
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        for i in next_body:
            body = bodies[i] if bodies else b""
            method = "POST" if body else "GET"
            head = (f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n"
                    f"Content-Type: application/vnd.docker.distribution.events.v1+json\r\n"
                    f"Content-Length: {len(body)}\r\n\r\n").encode()
            t = time.perf_counter()
            writer.write(head + body)
            status = await reader.readline()
            length = 0
            while (line := await reader.readline()) not in (b"\r\n", b""):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            await reader.readexactly(length)
            latencies.append(time.perf_counter() - t)
            code = int(status.split()[1])
            if code not in (200, 202):
                raise SystemExit(f"answer {code} for envelope {i}")
        writer.close()

    t = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(connections)))
    return time.perf_counter() - t, sorted(latencies)


def percentile(sorted_values, q):
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


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


def run(args):
    work = tempfile.mkdtemp(prefix="pullstats-serve-")
    rows = []
    events = os.path.join(work, "events.jsonl")
    subprocess.run([args.bin, "gen", "-q", "--events", str(args.events), "--format", "distribution",
                    "--days", "7", "--output", events], check=True, env=ENV)
    tokens = os.path.join(work, "tokens.toml")
    token = subprocess.run([args.bin, "token", "create", "--tokens", tokens, "--name", "bench",
                            "--role", "receive"], check=True, env=ENV, capture_output=True,
                           text=True).stdout.strip()
    try:
        # The load generator's ceiling: the same connections, GET /healthz.
        p, port = start_serve(args.bin, work, os.path.join(work, "idle"), tokens, [])
        n = min(args.events, 50_000)
        secs, lat = asyncio.run(post_all(port, [b""] * n, args.connections, token, "/healthz"))
        stop(p)
        rows.append(("load generator ceiling (GET /healthz)", f"{n:,} requests, {args.connections} connections",
                     f"{n / secs:,.0f} requests/s", "", "", f"p50 {percentile(lat, .5) * 1e3:.1f} ms, "
                     f"p99 {percentile(lat, .99) * 1e3:.1f} ms"))

        reference = os.path.join(work, "reference")
        t = time.perf_counter()
        subprocess.run([args.bin, "ingest", "-q", "--no-progress", "--from-file", events, "--table", reference],
                       check=True, env=ENV, stdout=subprocess.DEVNULL)
        ingest_s = time.perf_counter() - t

        url_port = kafka_ingest.free_port()
        url = f"tcp://127.0.0.1:{url_port}"
        broker_log = open(os.path.join(work, "broker.log"), "w")
        broker = subprocess.Popen([args.tansu, "broker", "--listener-url", url, "--advertised-listener-url", url,
                                   "--storage-engine", "memory://tansu/"], stdout=broker_log, stderr=broker_log,
                                  cwd=work)
        try:
            kafka_ingest.wait_port(url_port)
            for topic, parts in (("produced", 3), ("forwarded", 3), ("forwarded.dlq", 1)):
                subprocess.run([args.tansu, "topic", "create", "--broker", url, "--partitions", str(parts), topic],
                               check=True, stdout=subprocess.DEVNULL)
            brokers = f"127.0.0.1:{url_port}"
            t = time.perf_counter()
            subprocess.run([args.bin, "produce", "--brokers", brokers, "--topic", "produced", "--from-file", events],
                           check=True, env=ENV, stdout=subprocess.DEVNULL)
            produce_s = time.perf_counter() - t

            for per in args.per_envelope:
                bodies = envelopes(events, per)
                label = f"{args.events:,} events, {per}/envelope ({len(bodies):,}), {args.connections} connections"
                modes = [(f"direct{'' if d == 'wal' else ' --no-wal'}", [] if d == "wal" else ["--no-wal"],
                          "ingest --from-file", ingest_s) for d in args.direct]
                modes.append(("forward", ["--brokers", brokers, "--topic", "forwarded"], "produce", produce_s))
                for mode, extra, ref_name, ref_s in modes:
                    table = os.path.join(work, f"{mode.split()[0]}-{per}")
                    t = time.perf_counter()
                    p, port = start_serve(args.bin, work, table, tokens, extra)
                    secs, lat = asyncio.run(post_all(port, bodies, args.connections, token))
                    answered = time.perf_counter() - t
                    stop(p)
                    stopped = time.perf_counter() - t
                    if mode.startswith("direct"):
                        # The time into the table: until the final commit.
                        figure = (f"{len(bodies) / answered:,.0f} envelopes/s answered ({answered:.1f} s); "
                                  f"{args.events / stopped:,.0f} events/s into the table ({stopped:.1f} s)")
                        total = stopped
                    else:
                        figure = (f"{len(bodies) / answered:,.0f} envelopes/s, "
                                  f"{args.events / answered:,.0f} events/s ({answered:.1f} s)")
                        total = answered
                    rows.append((f"serve {mode}", label, figure,
                                 f"{ref_name} {args.events / ref_s:,.0f} events/s ({ref_s:.1f} s)",
                                 f"{ref_s / total:.2f} of the rate",
                                 f"p50 {percentile(lat, .5) * 1e3:.1f} ms, p99 {percentile(lat, .99) * 1e3:.1f} ms"))
                    shutil.rmtree(table, ignore_errors=True)
                    shutil.rmtree(table + ".rejected", ignore_errors=True)
        finally:
            broker.kill()
            broker.wait()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", default="target/release/pullstats")
    ap.add_argument("--tansu", default=os.path.expanduser("~/.cargo/bin/tansu"))
    ap.add_argument("--events", type=int, default=200_000)
    ap.add_argument("--per-envelope", type=int, nargs="+", default=[1, 50])
    ap.add_argument("--connections", type=int, default=64)
    ap.add_argument("--direct", nargs="*", choices=["wal", "no-wal"], default=["wal"],
                    help="direct mode with its write-ahead log, without (--no-wal: slow), or both")
    args = ap.parse_args()
    rows = run(args)
    print("| scenario | input | serve | reference | serve / reference | answer latency |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print("| " + " | ".join(r) + " |")


if __name__ == "__main__":
    main()
