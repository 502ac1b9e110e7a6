"""Turns the benchmark's JSON result lines into bench/results/<date>.md and a PNG plot.

usage: report.py RESULTS_FILE SMOKE COMMAND
In smoke mode it only checks correctness (every scenario ran, nothing dropped or refused)
and writes nothing.
"""
import datetime
import json
import os
import platform
import subprocess
import sys

results_file, smoke, command = sys.argv[1], sys.argv[2] == "1", sys.argv[3]
rows = {}
for line in open(results_file):
    label, _, payload = line.strip().partition(" ")
    rows[label] = json.loads(payload)

problems = []
for label, r in rows.items():
    if r["scenario"] == "idle" and (r["failed"] or r.get("lost") or not r["connected"]):
        problems.append(f"{label}: {r['failed']} connections failed, {r.get('lost')} closed while held")
    # Refusals (load shedding on a busy host) are answers, not losses: they owe no deliveries.
    if r["scenario"] in ("fanout", "chat") and (r["drops"] or r["ack_errors"] or not r["delivered"]):
        problems.append(f"{label}: {r['drops']} drops, {r['ack_errors']} ack errors, {r.get('refused', 0)} refused, {r['delivered']} delivered")
if smoke:
    for label, r in sorted(rows.items()):
        print(f"smoke {label}: ok" if not any(p.startswith(label + ":") for p in problems) else f"smoke {label}: FAILED")
    if problems:
        print("\n".join(problems))
        sys.exit(1)
    sys.exit(0)

def version(cmd):
    try:
        return subprocess.run(cmd, capture_output=True, text=True, check=False).stdout.strip().splitlines()[0]
    except (OSError, IndexError):
        return "?"

today = datetime.date.today().isoformat()
out_dir = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
os.makedirs(out_dir, exist_ok=True)
md = [f"# Benchmark results {today}", "", f"Command: `{command}`", ""]
md += ["## Machine", "",
       f"- {platform.machine()}, {os.cpu_count()} cores, Linux {platform.release()}",
       f"- {version(['rustc', '--version'])}; node {version(['node', '--version'])}; {version(['redis-server', '--version'])}",
       "- Servers and the load generator share the machine; compare ratios within this run.", ""]
if any("/centrifugo" in l for l in rows):
    md.insert(len(md) - 2, f"- Centrifugo {os.environ.get('CENTRIFUGO_VERSION', '?')} (idle and fan-out only)")

def get(label, key):
    return rows.get(label, {}).get(key)

md += ["## Idle connections", "",
       "One storm per server and round, each on a fresh process; the order rotates each round. Ratios are taken within a "
       "round (storms minutes apart vary more than the servers differ) and the median over the rounds is reported.", "",
       "| server | processes | round | connections | failed | KiB RSS per connection | connects/s | server CPU µs per connect |",
       "|---|---|---|---|---|---|---|---|"]
idle = {}  # (server, processes) -> {round: result}
for l, r in rows.items():
    if l.startswith("idle/"):
        _, t, procs, rnd = l.split("/")
        idle.setdefault((t, int(procs)), {})[int(rnd)] = r
for (t, procs), by_round in sorted(idle.items()):
    for rnd, r in sorted(by_round.items()):
        md.append(f"| {t} | {procs} | {rnd} | {r['connected']} | {r['failed']} | {r['kib_per_connection']:.1f} | "
                  f"{r['connect_rate']:.0f} | {r['server_cpu_us_per_connect']:.0f} |")

def median(values):
    values = sorted(values)
    mid = len(values) // 2
    return values[mid] if len(values) % 2 else (values[mid - 1] + values[mid]) / 2

def idle_ratio(key, peer):
    """Switchyard's `key` over `peer`'s, per round; their median and the per-round figures."""
    ours, theirs = idle.get(("switchyard", 1), {}), idle.get((peer, 1), {})
    ratios = [ours[n][key] / theirs[n][key] for n in sorted(ours) if n in theirs and theirs[n][key]]
    if not ratios:
        return ""
    each = f" (rounds: {', '.join(f'{x:.2f}' for x in ratios)})" if len(ratios) > 1 else ""
    return f"**{median(ratios):.2f}**{each}"

md.append("")
for text, key, peer, goal in (
    ("RSS per idle connection: Switchyard / Node", "kib_per_connection", "node", " (goal ≤ 0.25)"),
    ("Connect rate: Switchyard / Node", "connect_rate", "node", " (goal ≥ 3)"),
    # The generator shares the two cores: the rate is capped by both processes' CPU, the CPU
    # per connect is the server's own cost.
    ("Server CPU per connect: Switchyard / Node", "server_cpu_us_per_connect", "node", ""),
    ("RSS per idle connection: Switchyard / Centrifugo", "kib_per_connection", "centrifugo", ""),
    ("Connect rate: Switchyard / Centrifugo", "connect_rate", "centrifugo", ""),
):
    ratio = idle_ratio(key, peer)
    if ratio:
        md.append(f"- {text} = {ratio}{goal}")

rates = sorted({int(l.split("/")[2]) for l in rows if l.startswith("fanout/")})
FANOUT_TARGETS = ("switchyard", "switchyard-noshed", "node", "floor") + (("centrifugo",) if any(l.startswith("fanout/centrifugo/") for l in rows) else ())
md += ["", "## Fan-out", "", "Bytes per delivery: the message as the receiver got it, protocol framing included; the floor relays frames "
       "as large as Switchyard's. Refused: messages the server answered with `unavailable` (load shedding); they are not stored and owe no deliveries. "
       "`switchyard-noshed` is Switchyard with load shedding off (`OVERLOAD_MAX_LAG_MS=0`).", "",
       "| rate/sender | server | delivered/s | bytes per delivery | p50 ms | p99 ms | p99.9 ms | drops | refused |", "|---|---|---|---|---|---|---|---|---|"]
for rate in rates:
    for t in FANOUT_TARGETS:
        r = rows.get(f"fanout/{t}/{rate}")
        if r:
            md.append(f"| {rate} | {t} | {r['delivered_per_sec']:.0f} | {r.get('frame_bytes', 0):.0f} | {r['p50_ms']:.1f} | {r['p99_ms']:.1f} | "
                      f"{r['p999_ms']:.1f} | {r['drops']} | {r.get('refused', 0)} |")
def peak(t):
    return max((get(f"fanout/{t}/{r}", "delivered_per_sec") or 0 for r in rates), default=0)

def sustained(t):
    """The highest rate at which `t` delivered everything, at ≥ 95% of the offered load."""
    ok = [r for r in rates if (x := rows.get(f"fanout/{t}/{r}")) and not x["drops"]
          and x["delivered_per_sec"] >= 0.95 * r * x["rooms"] * (x["members"] - 1)]
    return max(ok, default=None)

s, n, f = peak("switchyard"), peak("node"), peak("floor")
if s and n and f:
    md += ["", f"- Peak delivered/s: Switchyard {s:,.0f}, Node {n:,.0f}, floor {f:,.0f}. "
           f"Switchyard / Node = **{s / n:.2f}** (goal ≥ 3), Switchyard / floor = **{s / f:.2f}** (goal ≥ 0.6)"]
c = peak("centrifugo")
if s and c:
    md += [f"- Peak delivered/s: Centrifugo {c:,.0f}. Switchyard / Centrifugo = **{s / c:.2f}**"]
if f and sustained("floor") == max(rates):
    md += ["- The floor delivered everything even at the highest rate: it was not saturated: its peak is a lower bound of its capacity and "
           "Switchyard / floor an upper bound."]
elif f:
    md += [f"- The floor saturated: at {max(rates)}/s offered it delivered {get(f'fanout/floor/{max(rates)}', 'delivered_per_sec'):,.0f}/s, "
           "so its peak is the capacity of the floor and the generator together on this machine."]
node_full = [r for r in rates if (x := rows.get(f"fanout/node/{r}")) and not x["drops"]]
if node_full:
    ratios = ", ".join(f"{r}/s: **{get(f'fanout/switchyard/{r}', 'p99_ms') / get(f'fanout/node/{r}', 'p99_ms'):.2f}**"
                       for r in node_full)
    md += [f"- p99 Switchyard / Node at each rate Node delivers in full (goal ≤ 0.33 at Node's best sustained rate): {ratios}"]
md += [f"- Highest rate delivered in full: " + ", ".join(f"{t} {sustained(t)}" for t in FANOUT_TARGETS)]

md += ["", "## Chat mix (direct and group rooms; messages, read receipts, typing)", "",
       "| server | users | actions/s | ack p50 ms | ack p99 ms | deliveries | delivery p99 ms | drops | errors | refused |",
       "|---|---|---|---|---|---|---|---|---|---|"]
for t in ("switchyard", "node"):
    r = rows.get(f"chat/{t}")
    if r:
        md.append(f"| {t} | {r['users']} | {r['actions_per_sec']:.0f} | {r['ack_p50_ms']:.1f} | {r['ack_p99_ms']:.1f} | "
                  f"{r['delivered']} | {r['p99_ms']:.1f} | {r['drops']} | {r['ack_errors']} | {r.get('refused', 0)} |")
as_, an = get("chat/switchyard", "ack_p99_ms"), get("chat/node", "ack_p99_ms")
if as_ and an:
    md += ["", f"- Ack p99 at the same offered load: Switchyard / Node = **{as_ / an:.2f}**"]

md += ["", "## Cross-node (three processes, one Redis)", "",
       "Members are spread over the three processes; the sender is on the first. Switchyard runs in back-to-back pairs: "
       "one process alone, then three, at the same load. Per node: the p99 of the deliveries made by the sender's node, and by the other two.", "",
       "| server | pair | rate/sender | single-node p99 ms | cross-node delivered/s | p50 ms | p99 ms | p99 on the sender's node / others ms | drops | cross / single p99 |",
       "|---|---|---|---|---|---|---|---|---|---|"]
ratios = []
for l, r in sorted(rows.items()):
    _, t, pair = l.split("/") if l.startswith("crossnode/") else ("", "", "")
    if t not in ("switchyard", "node"):
        continue
    single = get(f"crossnode/switchyard-single/{pair}", "p99_ms") if t == "switchyard" else None
    nodes = r.get("by_server", [])
    per_node = " / ".join(", ".join(f"{n['p99_ms']:.1f}" for n in nodes if bool(n["senders"]) == here) for here in (True, False))
    ratio = r["p99_ms"] / single if single else None
    if ratio:
        ratios.append(ratio)
    md.append(f"| {t} | {pair} | {r['rate_per_sender']} | {f'{single:.1f}' if single else '–'} | {r['delivered_per_sec']:.0f} | {r['p50_ms']:.1f} | "
              f"{r['p99_ms']:.1f} | {per_node} | {r['drops']} | {f'{ratio:.2f}' if ratio else '–'} |")
if ratios:
    md += ["", f"- Switchyard cross-node p99 / single-node p99, median of {len(ratios)} pairs = **{median(ratios):.2f}** (goal ≤ 2)"]
if problems:
    md += ["", "## Problems", ""] + [f"- {p}" for p in problems]
md += ["", "## Raw results", "", "```"] + [f"{l} {json.dumps(r)}" for l, r in sorted(rows.items())] + ["```", ""]

png = f"{today}.png"
try:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    for t in FANOUT_TARGETS:
        xs = [r for r in rates if f"fanout/{t}/{r}" in rows]
        a.plot(xs, [rows[f"fanout/{t}/{r}"]["delivered_per_sec"] for r in xs], marker="o", label=t)
        b.plot(xs, [rows[f"fanout/{t}/{r}"]["p99_ms"] for r in xs], marker="o", label=t)
    a.set(title="Fan-out throughput", xlabel="messages/s per sender", ylabel="delivered messages/s")
    b.set(title="Fan-out p99 latency", xlabel="messages/s per sender", ylabel="ms", yscale="log")
    a.legend(); b.legend()
    fig.tight_layout()
    fig.savefig(os.path.join(out_dir, png), dpi=110)
    md.insert(4, f"![throughput and latency]({png})\n")
except ImportError:
    md.insert(4, "(matplotlib missing: no plot)\n")

path = os.path.join(out_dir, f"{today}.md")
open(path, "w").write("\n".join(md))
print(f"wrote {path}")
