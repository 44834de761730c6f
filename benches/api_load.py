"""The publisher API of `pullstats serve` under load: answers/s, p50, p99.

    python3 benches/api_load.py [--events 20000000] [--days 365]
        [--connections 50] [--duration 20] [--bin target/release/pullstats]
        [--table DIR]   # reuse a table (built once into DIR when missing)

Generated traffic over the last --days days (ending at the last complete
month) is ingested into a table; `serve` starts on it and computes its
complete periods; then wrk (Debian's `wrk`) runs --connections keep-alive
connections on loopback for --duration seconds against the series
endpoints of the busiest namespace: weekly and monthly, per repository and
per namespace, 3 to 12 months back, one namespace's repositories at a time,
rotated request by request; then the same load against what the dashboard
asks beside them (breakdowns and references over 3 to 12 months and a
custom range, and that range's series). The reference in the same run:
the same load against GET /healthz (the server's and wrk's own floor).
Prints one table.
"""
import argparse
import datetime
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request

ENV = dict(os.environ, PULLSTATS_IP_HASH_KEY="bench", RUST_LOG="warn")
BASE = "/api/publisher/analytics/v1"


def run(cmd, **kw):
    return subprocess.run(cmd, check=True, env=ENV, **kw)


def build_table(bin_, table, events, days):
    """gen piped into ingest (no events file: 240M events would be ~100 GB),
    then compact, as the query harness builds its tables."""
    today = datetime.date.today()
    end = today.replace(day=1)
    start = end - datetime.timedelta(days=days)
    print(f"generating and ingesting {events} events from {start} over {days} days", file=sys.stderr)
    gen = subprocess.Popen([bin_, "gen", "-q", "--events", str(events), "--days", str(days),
                            "--start", start.isoformat()], env=ENV, stdout=subprocess.PIPE)
    run([bin_, "ingest", "-q", "--no-progress", "--from-file", "-", "--table", table], stdin=gen.stdout)
    gen.stdout.close()
    if gen.wait() != 0:
        sys.exit("gen failed")
    started = time.monotonic()
    run([bin_, "compact", "--table", table], stdout=subprocess.DEVNULL)
    print(f"compact (files, then every complete period into the periods table): "
          f"{time.monotonic() - started:.1f} s", file=sys.stderr)


def get(port, path, token=None):
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(req, timeout=600) as r:
        return json.loads(r.read())


def wrk(port, token, paths, connections, duration):
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        quoted = ",".join(json.dumps(p) for p in paths)
        f.write(f"""
local paths = {{{quoted}}}
local i = 0
request = function()
  i = i % #paths + 1
  return wrk.format("GET", paths[i], {{["Authorization"] = "Bearer {token}"}})
end
""")
        script = f.name
    out = subprocess.run(
        ["wrk", "-t", "2", "-c", str(connections), "-d", f"{duration}s", "--timeout", "60s", "--latency",
         "-s", script, f"http://127.0.0.1:{port}"],
        check=True, capture_output=True, text=True).stdout
    os.unlink(script)
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))

    def pct(p):
        m = re.search(rf"^\s+{p}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        v, unit = float(m.group(1)), m.group(2)
        return v * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]

    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return rate, pct(50), pct(99), int(errors.group(1)) if errors else 0


def dashboard_paths(namespace, repos):
    """What the dashboard asks for one view with every repository selected:
    breakdowns and references over 3, 6 and 12 months and over a custom
    range inside the last complete month, and that range's weekly series
    (cut at both ends: scanned, not read from the periods)."""
    month = datetime.date.today().replace(day=1)
    month = (month - datetime.timedelta(days=1)).replace(day=1)
    custom = f"from={month + datetime.timedelta(days=3)}&to={month + datetime.timedelta(days=20)}"
    spans = [f"timespan=months&period={p}" for p in ("last-3-months", "last-6-months", "last-12-months")]
    spans.append(custom)
    names = "".join(f"&repos={r}" for r in repos)
    paths = [f"{BASE}/namespaces/{namespace}/{what}?{span}{names}"
             for span in spans for what in ("breakdowns", "references")]
    full = "".join(f"&repos={namespace}/{r}" for r in repos)
    paths.append(f"{BASE}/repos/pulls?timespan=weeks&{custom}{full}")
    return paths


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=20_000_000)
    ap.add_argument("--days", type=int, default=365)
    ap.add_argument("--connections", type=int, default=50)
    ap.add_argument("--duration", type=int, default=20)
    ap.add_argument("--bin", default="target/release/pullstats")
    ap.add_argument("--table")
    ap.add_argument("--port", type=int, default=18181)
    a = ap.parse_args()
    if not shutil.which("wrk"):
        sys.exit("this bench needs wrk (apt-get install wrk)")
    work = tempfile.mkdtemp(prefix="api-load-")
    table = a.table or os.path.join(work, "pulls")
    if not os.path.isdir(os.path.join(table, "_delta_log")):
        build_table(a.bin, table, a.events, a.days)
    tokens = os.path.join(work, "tokens.toml")
    token = subprocess.run(
        [a.bin, "token", "create", "--tokens", tokens, "--name", "bench", "--role", "read",
         "--namespace", "*"], check=True, capture_output=True, text=True, env=ENV).stdout.split()[-1]
    serve = subprocess.Popen(
        [a.bin, "serve", "--table", table, "--tokens", tokens, "--listen",
         f"127.0.0.1:{a.port}", "--max-connections", str(a.connections + 14)], env=ENV)
    try:
        for _ in range(600):
            try:
                get(a.port, "/healthz")
                break
            except Exception:
                time.sleep(0.1)
        # The busiest namespace, by its last complete month's pulls.
        started = time.monotonic()
        namespaces = get(a.port, BASE, token)["namespaces"]
        busiest, most = None, -1
        for ns in namespaces:
            rows = get(a.port, f"{BASE}/namespaces/{ns}/pulls?group=namespace", token)["pulls"]
            n = rows[-1]["pullCount"] if rows else 0
            if n > most:
                busiest, most = ns, n
        paths = []
        for ts in ("weeks", "months"):
            for period in ("last-3-months", "last-6-months", "last-12-months"):
                for group in ("repo", "namespace"):
                    paths.append(f"{BASE}/namespaces/{busiest}/pulls?timespan={ts}&period={period}&group={group}")
        repos = {r["repo"] for r in get(a.port, paths[0], token)["pulls"]}
        for r in sorted(repos)[:10]:
            paths.append(f"{BASE}/namespaces/{busiest}/repos/{r}/pulls?timespan=weeks&period=last-12-months")
        # First answers compute (or wait for) every period: the warm-up.
        for p in paths:
            get(a.port, p, token)
        warm = time.monotonic() - started
        dashboard = dashboard_paths(busiest, sorted(repos))
        started = time.monotonic()
        for p in dashboard:
            get(a.port, p, token)
        first = time.monotonic() - started
        series = wrk(a.port, token, paths, a.connections, a.duration)
        views = wrk(a.port, token, dashboard, a.connections, a.duration)
        floor = wrk(a.port, token, ["/healthz"], a.connections, a.duration)
    finally:
        serve.terminate()
        serve.wait()
    actions = subprocess.run(
        [a.bin, "sql", "--table", table, "--format", "csv", "SELECT count(*) FROM pulls"],
        check=True, capture_output=True, text=True, env=ENV).stdout.split()[-1]
    print(f"table: {actions} actions; busiest namespace `{busiest}` ({len(repos)} repositories, "
          f"{most} pulls in its last month); {len(paths)} series paths; warm-up {warm:.1f} s")
    print(f"dashboard: {len(dashboard)} paths (breakdowns, references and a custom range's series), "
          f"first answers {first:.1f} s")
    print(f"{'load (' + str(a.connections) + ' connections, ' + str(a.duration) + ' s)':<44} {'answers/s':>10} {'p50 ms':>8} {'p99 ms':>8} {'non-2xx':>8}")
    for name, (rate, p50, p99, bad) in (("series endpoints", series), ("dashboard endpoints", views),
                                        ("GET /healthz (reference)", floor)):
        print(f"{name:<44} {rate:>10.0f} {p50:>8.2f} {p99:>8.2f} {bad:>8}")
    print(f"series / healthz throughput: {series[0] / floor[0]:.2f}; dashboard / healthz: {views[0] / floor[0]:.2f}")
    if not a.table:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
