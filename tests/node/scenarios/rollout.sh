# Scenario "rollout": a rolling update of the RealtimeCluster `hello` (from "apply") under chat
# traffic. The image tag and a config field (server.logLevel) change at once; every server pod
# is replaced, both clients reconnect by themselves, and every acked message is in the room's
# history exactly once. Every replaced pod is stopped by its own SIGTERM drain, not by the
# kubelet's SIGKILL at the end of the grace period (drain_watch / drain_check, also used by
# "faults" for the pod it deletes).

ROLLOUT_IMAGE=ghcr.io/switchyard-dev/switchyard-server:node-rollout

# rolled_out: every server pod of hello runs the new image and is Ready, and there are 2.
rolled_out() {
  local images
  images="$(kubectl get pods -l "$(server_sel hello)" -o jsonpath='{range .items[*]}{.spec.containers[0].image}{"\n"}{end}' | sort -u)"
  [[ "$images" == "$ROLLOUT_IMAGE" ]] && pods_ready default "$(server_sel hello)" 2
}

# drain_watch <label selector>: before the matching pods are stopped, starts what sees how
# each of them ends, whoever ends it: containerd's task events (exit status and time of every
# container), each pod's log followed from now on (the server logs "draining: ..." when SIGTERM
# arrives, after the preStop sleep, and "stopped" when its drain is done), and a watch of the
# pods (a deleted pod's deletionTimestamp is its SIGKILL deadline: the time of the delete plus
# terminationGracePeriodSeconds). The pods, their container ids and grace periods go to
# $WORK/drain/pods.
drain_watch() {
  local d="$WORK/drain" name cid grace
  rm -rf "$d"
  mkdir -p "$d"
  kubectl get pods -l "$1" -o jsonpath='{range .items[*]}{.metadata.name} {.status.containerStatuses[0].containerID} {.spec.terminationGracePeriodSeconds}{"\n"}{end}' >"$d/pods"
  [[ -s "$d/pods" ]] || die "drain_watch: no pods match $1"
  ctr --address "$CTRD_SOCK" --namespace k8s.io events >"$d/events" 2>&1 </dev/null &
  echo $! >"$WORK/pids/bg-drain-events"
  kubectl get pods -l "$1" --watch -o jsonpath='{.metadata.name} {.metadata.deletionTimestamp}{"\n"}' >"$d/watch" 2>&1 </dev/null &
  echo $! >"$WORK/pids/bg-drain-watch"
  while read -r name cid grace; do
    kubectl logs -f "$name" >"$d/$name.log" 2>&1 </dev/null &
    echo $! >"$WORK/pids/bg-drain-log-$name"
  done <"$d/pods"
  eventually "following the log of every server pod ($(cut -d' ' -f1 "$d/pods" | xargs))" 60 logs_followed
}

# logs_followed: the log of every pod drain_watch recorded has lines (its follower is connected).
logs_followed() {
  local name _
  while read -r name _; do [[ -s "$WORK/drain/$name.log" ]] || return 1; done <"$WORK/drain/pods"
}

# drain_check [pod...]: for the given pods (default: every pod drain_watch recorded), once
# containerd reports the exit of the pod's server container: exit status 0 (137 would be the
# kubelet's SIGKILL), the "draining" and "stopped" lines in its log and not "grace period
# over" (the server's own deadline), and the exit before the pod's deletionTimestamp. Prints
# the measured times. Stops the watchers.
drain_check() {
  local d="$WORK/drain" name cid grace f
  while read -r name cid grace; do
    (($# == 0)) || [[ " $* " == *" $name "* ]] || continue
    cid="${cid#containerd://}"
    eventually "containerd reports the exit of the server container of $name" 180 \
      grep -q "/tasks/exit .*\"container_id\":\"$cid\"" "$d/events" || { tail -5 "$d/events" >&2; die "no exit event for $cid"; }
    python3 - "$name" "$cid" "$grace" "$d/events" "$d/$name.log" "$d/watch" <<'PY' || die "$name was not drained by SIGTERM within its grace period"
import json, re, sys
from datetime import datetime

def epoch(t):
    """RFC 3339 with up to nanoseconds (Go, tracing), or a protobuf {seconds, nanos}."""
    if isinstance(t, dict):
        return t.get("seconds", 0) + t.get("nanos", 0) / 1e9
    m = re.fullmatch(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]\d\d:\d\d)", t)
    return datetime.fromisoformat(m[1] + ("+00:00" if m[3] == "Z" else m[3])).timestamp() + float(m[2] or 0)

name, cid, grace, events, log, watch = sys.argv[1:]
exits = [json.loads(l.split(" /tasks/exit ", 1)[1]) for l in open(events) if " /tasks/exit " in l]
# The container's own process (id = container id), not an exec in it. Protobuf's JSON leaves
# out a zero exit status.
ev = next(e for e in exits if e.get("container_id") == cid and e.get("id") == cid)
status, exited = ev.get("exit_status", 0), epoch(ev["exited_at"])
lines = []
for l in open(log):
    try:
        lines.append(json.loads(l))
    except ValueError:
        pass
msgs = [(x.get("message", ""), x.get("timestamp")) for x in lines]
draining = [epoch(t) for m, t in msgs if m.startswith("draining")]
deadline = [epoch(p[1]) for p in (l.split() for l in open(watch)) if len(p) == 2 and p[0] == name]
problems = []
if status != 0:
    problems.append(f"exit status {status}" + (" (SIGKILL: the grace period ran out)" if status == 137 else ""))
if not draining:
    problems.append("no 'draining' line in its log: SIGTERM never reached the server's drain")
if not any(m == "stopped" for m, _ in msgs):
    problems.append("no 'stopped' line in its log: the drain did not finish")
if any("grace period over" in m for m, _ in msgs):
    problems.append("the server's own grace period ran out (it exited with connections open)")
if not deadline:
    problems.append("its deletionTimestamp was never seen")
elif exited > deadline[0]:
    problems.append(f"exited {exited - deadline[0]:.1f} s after its deletionTimestamp (the SIGKILL deadline)")
if problems:
    print(f"FAIL: {name}: " + "; ".join(problems), file=sys.stderr)
    print("".join(open(log).readlines()[-10:]), file=sys.stderr)
    sys.exit(1)
deleted = deadline[0] - int(grace)
print(f"ok: {name} drained by SIGTERM: exit status 0, {exited - draining[0]:.2f} s from SIGTERM ('draining') to exit, "
      f"{exited - deleted:.1f} s from its deletion to exit (terminationGracePeriodSeconds {grace}: "
      f"{deadline[0] - exited:.1f} s to spare)")
PY
  done <"$d/pods"
  for f in "$WORK"/pids/bg-drain-*; do
    kill "$(cat "$f")" 2>/dev/null || true
    rm -f "$f"
  done
}

scenario_rollout() {
  kubectl get rtc hello >/dev/null 2>&1 || scenario_apply
  # The same build under a second tag: what changes is the name the Deployment asks for.
  ctr_ images tag --force "ghcr.io/switchyard-dev/switchyard-server:$APP_VERSION" "$ROLLOUT_IMAGE" >/dev/null
  local svc secret traffic rc=0 summary
  svc="$(jp svc hello '{.spec.clusterIP}')"
  secret="$(jwt_secret default hello-jwt)"
  rm -f "$WORK/traffic.stop"
  SY_SECRET="$secret" SY_URL="http://$svc:3001" SY_STOP="$WORK/traffic.stop" \
    setsid node "$HERE/clients/traffic.mjs" >"$WORK/traffic.log" 2>&1 </dev/null &
  traffic=$!
  echo "$traffic" >"$WORK/pids/bg-traffic"
  eventually "traffic flows (20 messages acked)" 120 acked_beyond 20
  drain_watch "$(server_sel hello)"

  kubectl patch rtc hello --type merge \
    -p "{\"spec\":{\"image\":\"$ROLLOUT_IMAGE\",\"server\":{\"logLevel\":\"debug\"}}}" >/dev/null
  ok "kubectl patch rtc hello: image $ROLLOUT_IMAGE, server.logLevel debug"
  eventually "every server pod replaced by one of the new image, 2 Ready" 300 rolled_out || { dump default; die "no rollout"; }
  expect_eq "LOG_LEVEL in the ConfigMap hello-config the new pods read" debug "$(jp configmap hello-config '{.data.LOG_LEVEL}')"
  drain_check
  traffic_goes_on "the rolling update"

  touch "$WORK/traffic.stop"
  wait "$traffic" || rc=$?
  rm -f "$WORK/pids/bg-traffic"
  summary="$(tail -n1 "$WORK/traffic.log")"
  echo "$summary"
  expect_eq "traffic client verdict (every acked message in history exactly once)" 0 "$rc"
  local reconnects
  reconnects="$(echo "$summary" | python3 -c 'import json,sys; print(json.load(sys.stdin)["reconnects"])')"
  ((reconnects >= 2)) || die "both clients should have reconnected by themselves (reconnects: $reconnects)"
  ok "both clients reconnected by themselves ($reconnects reconnects)"
}
