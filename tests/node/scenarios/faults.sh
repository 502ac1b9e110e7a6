# Scenario "faults": chat traffic through the Service of the RealtimeCluster `hello` (from
# "apply") while a server pod is deleted, a server container is killed with SIGKILL through
# containerd, and the managed Redis pod is restarted (persistence on, claim on a volume). After
# each fault the traffic must go on; at the end every acked message is in the room's history
# exactly once, including those acked before Redis restarted. The deleted pod is stopped by its
# SIGTERM drain within its grace period (drain_check, rollout.sh). Users whose sockets were on
# the killed container are announced offline by the other pod within the documented bound, and
# users who reconnect are online again (clients/presence.mjs).

# The documented bound on presence after a server dies without goodbye (docs/notifications.md,
# Presence: HEARTBEAT_TTL 15 s + MAINTAIN_INTERVAL 5 s), and the slack a loaded machine gets
# on top of it: presence that never converges still fails.
PRESENCE_BOUND_S=20
PRESENCE_SLACK_S=40

acked_count() { sed -n 's/^acked //p' "$WORK/traffic.log" | tail -n1; }
acked_beyond() { (($(acked_count || echo 0) >= $1)); }
restarts_of() { jp pod "$1" '{.status.containerStatuses[0].restartCount}'; }
restarted() { (($(restarts_of "$1") > $2)); }
gone() { ! kill -0 "$1" 2>/dev/null; }
# ready_or_gone <pid> <log>: the client printed "ready", or it exited (with its reason).
ready_or_gone() { grep -qx ready "$2" || gone "$1"; }

# traffic_goes_on <what>: 20 more messages acked after the fault.
traffic_goes_on() {
  local n
  n=$(($(acked_count) + 20))
  eventually "traffic goes on after $1 (acked $n)" 180 acked_beyond "$n" || { tail -5 "$WORK/traffic.log" >&2; dump default; die "traffic stopped"; }
}

scenario_faults() {
  kubectl get rtc hello >/dev/null 2>&1 || scenario_apply
  local sel svc secret pods victim
  sel="$(server_sel hello)"
  svc="$(jp svc hello '{.spec.clusterIP}')"
  secret="$(jwt_secret default hello-jwt)"
  rm -f "$WORK/traffic.stop"
  SY_SECRET="$secret" SY_URL="http://$svc:3001" SY_STOP="$WORK/traffic.stop" \
    setsid node "$HERE/clients/traffic.mjs" >"$WORK/traffic.log" 2>&1 </dev/null &
  local traffic=$!
  echo "$traffic" >"$WORK/pids/bg-traffic"
  eventually "traffic flows (20 messages acked)" 120 acked_beyond 20

  mapfile -t pods < <(kubectl get pods -l "$sel" -o jsonpath='{range .items[*]}{.metadata.name}{"\n"}{end}')
  drain_watch "$sel"
  kubectl delete pod "${pods[0]}" --wait=false >/dev/null
  ok "deleted server pod ${pods[0]}"
  traffic_goes_on "the pod delete"
  eventually "2 server pods Ready again" 180 pods_ready default "$sel" 2
  drain_check "${pods[0]}"

  # Presence clients on the victim (ghosts who will not come back, returners who will), a
  # watcher on the other pod; the kill comes once all are online.
  local other presence prc=0
  mapfile -t pods < <(kubectl get pods -l "$sel" -o jsonpath='{range .items[*]}{.metadata.name}{"\n"}{end}')
  victim="${pods[0]}" other="${pods[1]}"
  SY_SECRET="$secret" SY_URL_A="http://$(jp pod "$victim" '{.status.podIP}'):3001" \
    SY_URL_B="http://$(jp pod "$other" '{.status.podIP}'):3001" SY_BOUND_S="$PRESENCE_BOUND_S" SY_SLACK_S="$PRESENCE_SLACK_S" \
    setsid node "$HERE/clients/presence.mjs" >"$WORK/presence.log" 2>&1 </dev/null &
  presence=$!
  echo "$presence" >"$WORK/pids/bg-presence"
  eventually "presence clients on $victim online as seen from $other" 120 ready_or_gone "$presence" "$WORK/presence.log"
  grep -qx ready "$WORK/presence.log" || { cat "$WORK/presence.log" >&2; die "the presence client failed before the kill"; }

  local before cid
  before="$(restarts_of "$victim")"
  cid="$(jp pod "$victim" '{.status.containerStatuses[0].containerID}')"
  ctr_ tasks kill -s SIGKILL "${cid#containerd://}" || die "ctr could not kill container ${cid#containerd://}"
  ok "SIGKILL to the server container of $victim"
  eventually "the kubelet restarts the killed container" 180 restarted "$victim" "$before"
  eventually "the presence client is done (convergence, then the returners back)" 420 gone "$presence" ||
    { cat "$WORK/presence.log" >&2; die "the presence client hung"; }
  wait "$presence" || prc=$?
  rm -f "$WORK/pids/bg-presence"
  grep -vx ready "$WORK/presence.log"
  grep -q '"convergedMs"' "$WORK/presence.log" || die "the presence client ended without its summary"
  expect_eq "presence client verdict (killed pod's users offline on $other within ${PRESENCE_BOUND_S} s + ${PRESENCE_SLACK_S} s, returners online)" 0 "$prc"
  traffic_goes_on "the SIGKILL"
  eventually "2 server pods Ready again" 180 pods_ready default "$sel" 2

  kubectl delete pod hello-redis-0 >/dev/null
  ok "deleted the Redis pod hello-redis-0 (AOF on its claim)"
  eventually "Redis Ready again" 180 pods_ready default "$(redis_sel hello)" 1
  traffic_goes_on "the Redis restart"

  touch "$WORK/traffic.stop"
  local rc=0
  wait "$traffic" || rc=$?
  rm -f "$WORK/pids/bg-traffic"
  tail -n1 "$WORK/traffic.log"
  expect_eq "traffic client verdict (every acked message in history exactly once, across the Redis restart)" 0 "$rc"
}
