#!/usr/bin/env bash
# Seeds for the fuzz targets, from the generator, testdata and the real-format
# files of ../../shared/data (not committed: `cargo fuzz cmin` keeps the
# minimised corpus in fuzz/corpus/). Usage: fuzz/seed.sh OUT_DIR
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=${1:?usage: seed.sh OUT_DIR}
shared=${PULLSTATS_SHARED:-$here/../../shared}
bin=${PULLSTATS_BIN:-$here/../target/debug/pullstats}
mkdir -p "$out"/{decode_line,notification_body,user_agent,cloud_ranges,mmdb,cli_values,saved_query,tokens_file,api_params}

"$bin" gen --events 40 --bad-ratio 0.2 --seed 3 2>/dev/null | split -l 1 - "$out/decode_line/flat-"
"$bin" gen --events 40 --format distribution --bad-ratio 0.2 --seed 4 2>/dev/null | split -l 1 - "$out/decode_line/envelope-"
"$bin" gen --events 40 --format distribution --seed 5 2>/dev/null | split -l 4 - "$out/notification_body/lines-"
cut -f1 "$here/../testdata/user-agents.tsv" "$here/../testdata/user-agents-malformed.tsv" | grep -v '^#' | split -l 1 - "$out/user_agent/ua-"
cp "$shared"/data/mmdb/*.mmdb "$out/mmdb/"
python3 - "$shared/data/cloud-ranges" "$out/cloud_ranges" <<'PY'
import json, os, sys
src, out = sys.argv[1:]
for name in sorted(os.listdir(src)):
    path = os.path.join(src, name)
    text = open(path, encoding="utf-8").read()
    if name.endswith(".json"):
        doc = json.loads(text)
        # Keep the shape, cut every list to its first three entries.
        def cut(v):
            if isinstance(v, list):
                return [cut(x) for x in v[:3]]
            if isinstance(v, dict):
                return {k: cut(x) for k, x in v.items()}
            return v
        text = json.dumps(cut(doc))
    else:
        text = "\n".join(text.splitlines()[:12]) + "\n"
    open(os.path.join(out, name), "w", encoding="utf-8").write(text)
PY
i=0
for v in 500ms 5s 1d 30d 31d 2m 1.5h 64KiB 256MiB 1GiB 10MB 0 0.5 1 2026-W45 2020-W53 2026-W53 2026-10 2028-02 \
         2026-10-15,2026-12-02 2026-12-02,2026-10-15 13m 400d 52w 2y 3m 6m 12m; do
  printf '%s' "$v" > "$out/cli_values/$((i++))"
done
i=0
for p in $'from=2026-11-01\nto=2026-12-01\nlimit=20' $'namespace=library' $'from=2026\'-- \nlimit=1' $'limit=x'; do
  for q in 0 1 2 3 4 5; do printf "\\x0$q%s" "$p" > "$out/saved_query/$((i++))"; done
done
cat > "$out/tokens_file/tokens.toml" <<'TOML'
[[token]]
name = "registry-eu"
sha256 = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
roles = ["receive"]

[[token]]
name = "publisher"
sha256 = "60303ae22b998861bce3b28f33eec1be758a213c86c93c076dbe9f558c11c752"
roles = ["read"]
namespaces = ["library", "acme/tool"]

[badges]
repos = ["library/nginx"]
TOML
i=0
for q in "" "timespan=weeks&period=last-12-months&group=namespace" "from=2026-10-15&to=2026-12-02" \
         "from=2025-01-01&to=2026-03-01" "timespan=days" "repos=a&repos=b&from=2026-1-2&to=2026-01-05" \
         "period=last-3-months&timespan=months" "from=%32%30%32%36-01-01&to=2026-02-01"; do
  printf '%s' "$q" > "$out/api_params/$((i++))"
done
echo "seeds in $out"
