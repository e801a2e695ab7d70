#!/usr/bin/env bash
# Every v1 call of API-v1.md with nothing but curl (and python3 to read
# JSON), against a running daemon: FORKD_URL (default http://127.0.0.1:8889),
# optional FORKD_TOKEN. Creates and removes the snapshot "<prefix>-curl" from
# the tiny image. Exits non-zero at the first call whose status or shape is off.
set -euo pipefail
URL=${FORKD_URL:-http://127.0.0.1:8889}
TAG=${1:-v1}-curl
AUTH=()
[ -n "${FORKD_TOKEN:-}" ] && AUTH=(-H "Authorization: Bearer $FORKD_TOKEN")
JSON=(-H 'content-type: application/json')

# call METHOD PATH EXPECTED_STATUS [BODY] -> body on stdout
call() {
	local method=$1 path=$2 want=$3 body=${4:-}
	local out status
	out=$(mktemp)
	if [ -n "$body" ]; then
		status=$(curl -s -o "$out" -w '%{http_code}' -X "$method" "${AUTH[@]}" "${JSON[@]}" -d "$body" "$URL$path")
	else
		status=$(curl -s -o "$out" -w '%{http_code}' -X "$method" "${AUTH[@]}" "$URL$path")
	fi
	if [ "$status" != "$want" ]; then
		echo "FAIL $method $path: status $status, wanted $want: $(cat "$out")" >&2
		rm -f "$out"
		exit 1
	fi
	cat "$out"
	rm -f "$out"
}

# field JSON EXPR: evaluate a python expression over the parsed document `d`
field() { python3 -c "import json,sys; d=json.loads(sys.argv[1]); print($2)" "$1"; }

check() { [ "$(field "$1" "$2")" = "True" ] || { echo "FAIL shape: $2 on $1" >&2; exit 1; }; }

check "$(call GET /healthz 200)" "d == {'ok': True}"
check "$(call GET /version 200)" "d['api'] == 'v1' and 'version' in d"
call GET /metrics 200 | grep -q '^forkd_sandboxes_active' || { echo "FAIL /metrics" >&2; exit 1; }
check "$(call GET /v1/snapshots 200)" "isinstance(d, list)"

call DELETE "/v1/snapshots/$TAG?force=true" 404 >/dev/null || true
snap=$(call POST /v1/snapshots 201 "{\"tag\": \"$TAG\", \"image\": \"tiny\", \"mem_mib\": 256}")
check "$snap" "d['tag'] == '$TAG' and d['status'] == 'ready' and d['bootable'] is True and isinstance(d['created_at_unix'], int)"
check "$(call GET "/v1/snapshots/$TAG/info" 200)" "d['tag'] == '$TAG' and d['vmstate_bytes'] > 0 and d['chain_depth'] == 0 and d['dependents'] == [] and d['ancestors'] == []"
call POST /v1/snapshots 409 "{\"tag\": \"$TAG\", \"image\": \"tiny\"}" >/dev/null

sbs=$(call POST /v1/sandboxes 201 "{\"snapshot_tag\": \"$TAG\", \"n\": 2, \"per_child_netns\": false, \"prewarm\": false, \"live_fork\": false, \"hugepages\": false}")
check "$sbs" "len(d) == 2 and all(s['snapshot_tag'] == '$TAG' and s['id'].startswith('sb-') and s['has_branched'] is False and s['branch_count'] == 0 for s in d)"
id=$(field "$sbs" "d[0]['id']")
id2=$(field "$sbs" "d[1]['id']")
check "$(call GET /v1/sandboxes 200)" "'$id' in [s['id'] for s in d]"
check "$(call GET "/v1/sandboxes/$id" 200)" "d['id'] == '$id' and d['guest_addr'] == '10.0.2.15:0'"
check "$(call POST "/v1/sandboxes/$id/ping" 200)" "d['pong'] is True"
check "$(call POST "/v1/sandboxes/$id/exec" 200 '{"args": ["echo", "hello"], "timeout_secs": 10}')" "d == {'stdout': 'hello\\n', 'stderr': '', 'exit_code': 0}"
call POST "/v1/sandboxes/$id/exec" 400 '{"args": []}' >/dev/null
check "$(call POST "/v1/sandboxes/$id/eval" 409 '{"code": "1+1"}')" "'error' in d and d['code'] == 'conflict'"
call DELETE "/v1/sandboxes/$id" 204 >/dev/null
call GET "/v1/sandboxes/$id" 404 >/dev/null
call DELETE "/v1/snapshots/$TAG" 409 >/dev/null
call DELETE "/v1/snapshots/$TAG?force=true" 204 >/dev/null
call GET "/v1/sandboxes/$id2" 404 >/dev/null
call GET "/v1/snapshots/$TAG/info" 404 >/dev/null
echo "all v1 calls ok"
