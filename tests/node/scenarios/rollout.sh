# Scenario "rollout": a rolling update of the RealtimeCluster `hello` (from "apply") under chat
# traffic. The image tag and a config field (server.logLevel) change at once; every server pod
# is replaced, both clients reconnect by themselves, and every acked message is in the room's
# history exactly once.

ROLLOUT_IMAGE=ghcr.io/switchyard-dev/switchyard-server:node-rollout

# rolled_out: every server pod of hello runs the new image and is Ready, and there are 2.
rolled_out() {
  local images
  images="$(kubectl get pods -l "$(server_sel hello)" -o jsonpath='{range .items[*]}{.spec.containers[0].image}{"\n"}{end}' | sort -u)"
  [[ "$images" == "$ROLLOUT_IMAGE" ]] && pods_ready default "$(server_sel hello)" 2
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

  kubectl patch rtc hello --type merge \
    -p "{\"spec\":{\"image\":\"$ROLLOUT_IMAGE\",\"server\":{\"logLevel\":\"debug\"}}}" >/dev/null
  ok "kubectl patch rtc hello: image $ROLLOUT_IMAGE, server.logLevel debug"
  eventually "every server pod replaced by one of the new image, 2 Ready" 300 rolled_out || { dump default; die "no rollout"; }
  expect_eq "LOG_LEVEL in the ConfigMap hello-config the new pods read" debug "$(jp configmap hello-config '{.data.LOG_LEVEL}')"
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
