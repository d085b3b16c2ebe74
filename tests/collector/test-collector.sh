#!/bin/sh
# test-collector.sh - drives `timeglass run` with fake-app (no real preload
# library: TIMEGLASS_LIB points to an empty one) and checks the store through
# `timeglass requests --json`, `timeglass runs --json` and sqlite3: exact row
# counts and fields, fork children, losses and their warning, exit status and
# signal pass-through, and one-line usage errors with status 2.
#
#   test-collector.sh TIMEGLASS FAKE_APP NULL_PRELOAD
# Exit 77 (skip) when sqlite3 or /usr/bin/python3 is missing.
set -u

TG=$1
FAKE=$2
export TIMEGLASS_LIB=$3
PY=/usr/bin/python3
command -v sqlite3 >/dev/null 2>&1 || { echo "SKIP: no sqlite3"; exit 77; }
[ -x "$PY" ] || { echo "SKIP: no $PY"; exit 77; }

# The store schema this build writes (lib/store.h).
SCHEMA=$(sed -n 's/^#define TG_STORE_SCHEMA \([0-9]*\).*/\1/p' "$(dirname "$0")/../../lib/store.h")

TMP=$(mktemp -d "${TMPDIR:-/tmp}/tg-collector-test.XXXXXX")
trap 'rm -rf "$TMP"' EXIT
unset TIMEGLASS_DB TIMEGLASS_KEEP_RUNS TIMEGLASS_RING_SIZE TIMEGLASS_QUIET
DB=$TMP/store/t.db
fails=0

ok() { echo "ok - $1"; }
fail() { echo "FAIL - $1"; fails=$((fails + 1)); }
check() { # check NAME EXPECTED ACTUAL
	if [ "$2" = "$3" ]; then ok "$1"; else fail "$1: expected '$2', got '$3'"; fi
}
q() { sqlite3 "$DB" "$1"; }

# A usage error: status 2 and exactly one stderr line starting "timeglass: ".
usage_error() { # usage_error NAME PATTERN CMD...
	name=$1 pattern=$2
	shift 2
	"$@" >"$TMP/out" 2>"$TMP/err"
	rc=$?
	lines=$(wc -l <"$TMP/err")
	if [ "$rc" = 2 ] && [ "$lines" = 1 ] && grep -q "^timeglass: .*$pattern" "$TMP/err"; then
		ok "$name"
	else
		fail "$name: status $rc, $lines stderr lines: $(cat "$TMP/err")"
	fi
}

# --- 5000 requests -------------------------------------------------------
"$TG" run --db "$DB" -- "$FAKE" 5000 2>"$TMP/err"
check "run fake-app 5000: exit status" 0 $?
grep -q "^timeglass: recording run 1 into $DB; see it with: timeglass requests" "$TMP/err" &&
	ok "start-up line" || fail "start-up line: $(cat "$TMP/err")"
check "store dir mode" 700 "$(stat -c %a "$TMP/store")"
check "store file mode" 600 "$(stat -c %a "$DB")"
check "schema version" "$SCHEMA" "$(q 'PRAGMA user_version')"
check "5000 rows" 5000 "$(q 'SELECT count(*) FROM requests WHERE run_id = 1')"
check "one process" 1 "$(q 'SELECT count(*) FROM processes WHERE run_id = 1')"
check "process ended" 1 "$(q 'SELECT count(*) FROM processes WHERE ended_unix_ns IS NOT NULL')"
check "no losses" 0 "$(q 'SELECT count(*) FROM losses')"
check "run ended, exit 0" "1|0" "$(q 'SELECT ended_unix_ns > started_unix_ns, exit_status FROM runs WHERE id = 1')"
"$TG" requests --db "$DB" --json >"$TMP/req.json" 2>"$TMP/err"
check "requests --json: status" 0 $?
check "requests --json: no warning" "" "$(cat "$TMP/err")"
sqlite3 -separator ' ' "$DB" 'SELECT id, start_unix_ns FROM requests ORDER BY id' >"$TMP/starts"

"$PY" - "$TMP/req.json" "$TMP/starts" <<'EOF' && ok "requests --json fields" || fail "requests --json fields"
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1], encoding="utf-8")]
starts = dict(tuple(map(int, l.split())) for l in open(sys.argv[2]))
assert len(rows) == 5000, len(rows)
need = ["id", "run_id", "pid", "tid", "conn_id", "start_unix_ns", "duration_ns", "method", "path",
        "query_string", "route", "status", "request_bytes", "response_bytes", "client_addr", "error",
        "http_version", "req_end_ns", "resp_start_ns", "flags", "headers", "transport"]
for r in rows:
    for k in need:
        assert k in r, (k, r)
    assert starts[r["id"]] == r["start_unix_ns"], "start_unix_ns not exact"
    assert r["run_id"] == 1 and r["route"] is None and r["transport"] == "http"
    assert r["http_version"] == "HTTP/1.1"
# record i: duration 3000 + i ns; sort them back into write order
rows.sort(key=lambda r: r["duration_ns"])
for i, r in enumerate(rows):
    assert r["duration_ns"] == 3000 + i, (i, r)
    assert r["method"] == ("POST" if i % 3 == 0 else "GET"), r
    assert r["req_end_ns"] == 1000, r
    assert r["request_bytes"] == 100 + i, r
    if i % 50 == 7:
        assert r["status"] is None and r["error"] == "client closed before response" and r["resp_start_ns"] is None, r
        assert r["response_bytes"] == 0
    else:
        assert r["status"] == (404 if i % 10 == 9 else 200) and r["error"] is None, r
        assert r["resp_start_ns"] == 2000 and r["response_bytes"] == 200 + i, r
    if i == 1:
        assert (r["path"], r["query_string"]) == ("/abs", "x=1"), r
    elif i == 3:
        assert r["path"] == '/odd"q\\b\x01\ufffd\u2028' and r["query_string"] is None, r
    elif i % 2 == 0:
        assert (r["path"], r["query_string"]) == ("/items/%d" % i, "q=%d" % i), r
    else:
        assert (r["path"], r["query_string"]) == ("/health", None), r
    addr = ["127.0.0.1:%d" % (40000 + i % 1000), "[::1]:5555", "unix", None][i % 4]
    assert r["client_addr"] == addr, (i, r)
    assert r["flags"] == (["head", "chunked_response"] if i % 5 == 0 else []), r
    assert r["headers"] == "host: localhost\nuser-agent: fake-app\n", r
    assert r["conn_id"] == i // 10 + 1
EOF
# Record 3's path held a byte that is not UTF-8: the store has U+FFFD in
# its place, so that a reader that decodes text strictly can read it.
"$PY" - "$DB" <<'EOF' && ok "store text is UTF-8" || fail "store text is UTF-8"
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
paths = [p for (p,) in db.execute("SELECT path FROM requests WHERE path LIKE '/odd%'")]
assert paths == ['/odd"q\\b\x01\ufffd\u2028'], paths
EOF
# The raw JSON line of record 3 escapes the control byte and U+2028 (the
# stored U+FFFD is valid UTF-8, written as is).
grep -q "$(printf '"path":"/odd\\\\"q\\\\\\\\b\\\\u0001\357\277\275\\\\u2028"')" "$TMP/req.json" && ok "JSON escaping" ||
	fail "JSON escaping: $(grep -o '"path":"/odd[^,]*' "$TMP/req.json")"

"$TG" requests --db "$DB" --limit 3 >"$TMP/table" 2>&1
check "requests table: header + 3 rows" 4 "$(wc -l <"$TMP/table")"
head -1 "$TMP/table" | grep -q '^ID  *TIME  *PID  *METHOD  *PATH  *ROUTE  *STATUS  *DURATION  *IN  *OUT  *ERROR' &&
	ok "table header" || fail "table header: $(head -1 "$TMP/table")"
"$TG" requests --db "$DB" --json --limit 10 | wc -l | grep -qx 10 && ok "--limit" || fail "--limit"

# --- forks -----------------------------------------------------------------
"$TG" run --quiet --db "$DB" -- "$FAKE" 100 3 2>"$TMP/err"
check "fork run: exit status" 0 $?
check "--quiet: nothing on stderr" "" "$(cat "$TMP/err")"
check "fork run: 400 rows" 400 "$(q 'SELECT count(*) FROM requests WHERE run_id = 2')"
check "fork run: 4 processes, 3 after fork" "4|3" \
	"$(q 'SELECT count(*), sum(after_fork) FROM processes WHERE run_id = 2')"
check "fork run: 100 rows per pid, each under its process" "4|100|100" \
	"$(q 'SELECT count(*), min(n), max(n) FROM (SELECT r.pid, count(*) AS n FROM requests r JOIN processes p ON p.id = r.process_id AND p.pid = r.pid WHERE r.run_id = 2 GROUP BY r.pid)')"
check "fork run: children's ppid is the parent" 3 \
	"$(q 'SELECT count(*) FROM processes c JOIN processes p ON c.ppid = p.pid AND p.after_fork = 0 WHERE c.run_id = 2 AND p.run_id = 2 AND c.after_fork = 1')"
"$TG" requests --db "$DB" --json | "$PY" -c 'import sys, json; print(len({json.loads(l)["pid"] for l in sys.stdin}))' |
	grep -qx 4 && ok "requests default to the latest run" || fail "requests default to the latest run"

# --- losses ----------------------------------------------------------------
"$TG" run --quiet --db "$DB" -- "$FAKE" 20000 0 overflow
check "overflow run: exit status" 0 $?
lost=$(q "SELECT coalesce(sum(events), 0) FROM losses WHERE run_id = 3 AND kind = 'ring_full'")
rows=$(q 'SELECT count(*) FROM requests WHERE run_id = 3')
[ "$lost" -gt 0 ] && ok "overflow: $lost losses recorded" || fail "overflow: no loss recorded"
check "overflow: rows + losses = records written" 20000 $((lost + rows))
"$TG" requests --db "$DB" --run 3 --json >/dev/null 2>"$TMP/err"
grep -qx "timeglass: warning: run 3 lost $lost events (ring full); some requests are missing" "$TMP/err" &&
	ok "loss warning line" || fail "loss warning line: $(cat "$TMP/err")"
"$TG" run --quiet --db "$DB" -- "$FAKE" 10 0 corrupt
check "corrupt record: 10 rows kept" 10 "$(q 'SELECT count(*) FROM requests WHERE run_id = 4')"
check "corrupt record: counted" "1" "$(q "SELECT sum(events) FROM losses WHERE run_id = 4 AND kind = 'ring_corrupt'")"
"$TG" run --quiet --db "$DB" -- "$FAKE" 50 0 shrink 2>"$TMP/err"
check "shrunk ring: exit status" 0 $?
check "shrunk ring: run closed by the collector" 1 "$(q 'SELECT count(*) FROM runs WHERE id = 5 AND ended_unix_ns IS NOT NULL')"
if grep -q "unreadable" "$TMP/err"; then
	check "shrunk ring: counted" 1 "$(q "SELECT count(*) FROM losses WHERE run_id = 5 AND kind = 'ring_corrupt'")"
else
	check "shrunk ring: drained before the shrink" 50 "$(q 'SELECT count(*) FROM requests WHERE run_id = 5')"
fi
"$TG" runs --db "$DB" --json | "$PY" -c '
import sys, json
runs = [json.loads(l) for l in sys.stdin]
assert [r["id"] for r in runs] == [1, 2, 3, 4, 5], runs
assert [r["requests"] for r in runs][:2] == [5000, 400], runs
assert runs[2]["lost_events"] > 0 and runs[0]["exit_status"] == 0, runs
' && ok "runs --json" || fail "runs --json"

# --- exit status and signals -----------------------------------------------
"$TG" run --quiet --db "$DB" -- sh -c 'exit 3'
check "exit status passes through" 3 $?
"$TG" run --quiet --db "$DB" sh -c 'kill -TERM $$'
check "killed by SIGTERM: 128+15, no '--' needed" 143 $?
check "run row keeps the status" 143 "$(q 'SELECT exit_status FROM runs ORDER BY id DESC LIMIT 1')"
"$TG" run --quiet --db "$DB" -- sh -c 'trap "exit 42" USR1; while :; do sleep 0.05; done' &
sup=$!
sleep 0.5
kill -USR1 $sup
wait $sup
check "SIGUSR1 forwarded to the command" 42 $?
"$TG" run --quiet --db "$DB" -- sh -c 'sleep 1; exit 5' 2>"$TMP/err" &
sup=$!
sleep 0.4
coll=$(pgrep -P $sup -x tg-collector)
[ -n "$coll" ] && kill -KILL "$coll"
wait $sup
check "collector killed: status still passes" 5 $?
check "collector killed: one line" 1 "$(wc -l <"$TMP/err")"
check "lib is appended to LD_PRELOAD" "/x.so:$(realpath "$TIMEGLASS_LIB")" \
	"$(LD_PRELOAD=/x.so "$TG" run --quiet --db "$DB" -- sh -c 'echo "$LD_PRELOAD"' 2>/dev/null)"

# --- retention -------------------------------------------------------------
"$TG" run --quiet --db "$DB" --keep-runs 2 -- true
check "--keep-runs 2 keeps 2 runs" 2 "$(q 'SELECT count(*) FROM runs')"
check "retention removes their rows" 0 "$(q 'SELECT count(*) FROM requests WHERE run_id NOT IN (SELECT id FROM runs)')"
TIMEGLASS_KEEP_RUNS=1 "$TG" run --quiet --db "$DB" -- true
check "TIMEGLASS_KEEP_RUNS=1" 1 "$(q 'SELECT count(*) FROM runs')"

# --- usage errors ----------------------------------------------------------
usage_error "unknown option" "unknown option '--bogus'" "$TG" run --db "$DB" --bogus -- true
usage_error "no command" "no command" "$TG" run --db "$DB"
usage_error "bad number" "bad number for --keep-runs" "$TG" run --db "$DB" --keep-runs 1x -- true
usage_error "bad env number" "TIMEGLASS_RING_SIZE" env TIMEGLASS_RING_SIZE=3 "$TG" run --db "$DB" -- true
usage_error "unknown command" "unknown command" "$TG" nosuch
usage_error "missing store" "no store at $TMP/none.db; record one with: timeglass run -- CMD" \
	"$TG" requests --db "$TMP/none.db"
usage_error "no such run" "no run 99" "$TG" requests --db "$DB" --run 99
head -c 8192 /dev/urandom >"$TMP/corrupt.db"
usage_error "corrupt store (run)" "not a TimeGlass store" "$TG" run --db "$TMP/corrupt.db" -- touch "$TMP/ran"
[ -e "$TMP/ran" ] && fail "command ran despite the store error" || ok "command not started on store error"
usage_error "corrupt store (requests)" "not a TimeGlass store" "$TG" requests --db "$TMP/corrupt.db"
sqlite3 "$TMP/newer.db" 'CREATE TABLE runs (id INTEGER PRIMARY KEY); PRAGMA user_version = 70;'
usage_error "newer schema (run)" "was written by a newer TimeGlass (schema 70, this one reads up to $SCHEMA)" \
	"$TG" run --db "$TMP/newer.db" -- true
usage_error "newer schema (requests)" "newer TimeGlass" "$TG" requests --db "$TMP/newer.db"
usage_error "unwritable dir" "cannot open store /dev/null/sub/t.db: Not a directory" "$TG" run --db /dev/null/sub/t.db -- true
if [ "$(id -u)" != 0 ]; then
	mkdir "$TMP/ro" && chmod 500 "$TMP/ro"
	usage_error "read-only dir" "cannot create" "$TG" run --db "$TMP/ro/t.db" -- true
fi
usage_error "missing library" "TIMEGLASS_LIB" env TIMEGLASS_LIB=/nonexistent.so "$TG" run --db "$DB" -- true

# --- help and version ------------------------------------------------------
check "--version" "timeglass 0.1.0" "$("$TG" --version)"
"$TG" --help | grep -q '^Usage: timeglass' && ok "--help" || fail "--help"
"$TG" help run | grep -q '^Usage: timeglass run' && ok "help run" || fail "help run"
"$TG" requests --help | grep -q -- '--limit' && ok "requests --help" || fail "requests --help"

[ "$fails" = 0 ] && echo "all passed" || echo "$fails failed"
[ "$fails" = 0 ]
