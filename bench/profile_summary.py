"""Summarises a profile taken by bench/profile.sh into a short text table.

usage: profile_summary.py heap FOLDED CONNECTIONS TITLE   (heaptrack_print -F output, peak cost)
       profile_summary.py cpu PERF_SCRIPT 0 TITLE         (perf script output with call graphs)
"""
import collections
import re
import sys

mode, path, conns, title = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]

# Frames that say how memory was allocated, not who wanted it.
PLUMBING = re.compile(
    r"^(alloc|realloc|malloc|calloc|finish_grow|grow.*|reserve.*|do_reserve_and_handle|with_capacity.*|allocate|"
    r"alloc_impl.*|new|new_uninit|channel|channel_from_.*|fallible_with_capacity|new_uninitialized|do_alloc|"
    r"resize_inner|prepare_resize|try_reserve|shallow_clone_vec|box_new_uninit|try_allocate_in|from_iter|clone|to_vec|to_owned|"
    r"_RNv.*|__rdl_alloc|aligned_malloc|poll|poll_inner|poll_future|catch_unwind|do_call|\{closure#\d+\}.*|\{async_block#\d+\}.*|\{async_fn#\d+\}.*|"
    r"call_once.*|with_mut.*|spawn.*|bind.*|new_task.*|map<>|try_with<>|with_current<>)$"
)


def heap():
    per_site = collections.Counter()
    total = 0
    for line in open(path):
        stack, _, cost = line.rstrip().rpartition(" ")
        cost = int(cost)
        total += cost
        frames = [f.split(" ")[0] for f in stack.split(";")]
        meaningful = [f for f in (f.removesuffix("<>") for f in reversed(frames)) if f and not PLUMBING.match(f)]
        per_site[" <- ".join(meaningful[:5]) or "?"] += cost
    print(title)
    print(f"live heap at the peak: {total / conns:,.0f} bytes per connection ({total / 1e6:.1f} MB)\n")
    print(f"{'bytes/conn':>10}  {'share':>5}  allocation site (innermost first)")
    for site, cost in per_site.most_common(15):
        print(f"{cost / conns:>10,.0f}  {100 * cost / total:>4.0f}%  {site[:150]}")


def cpu():
    inclusive, self_ = collections.Counter(), collections.Counter()
    samples = 0
    for block in open(path).read().split("\n\n"):
        lines = [l.strip() for l in block.strip().splitlines()]
        if len(lines) < 2:
            continue
        samples += 1
        symbols = []
        for l in lines[1:]:
            parts = l.split(" ", 1)
            if len(parts) == 2:
                symbols.append(re.sub(r"\s*\(.*\)$", "", parts[1]))
        if symbols:
            self_[symbols[0]] += 1
        for s in set(symbols):
            inclusive[s] += 1
    print(title)
    print(f"{samples} samples\n")
    print("where the time goes (inclusive, selected frames):")
    keep = re.compile(r"(switchyard|socketioxide|engineioxide|tungstenite|send_raw|send_many|broadcast|"
                      r"sys_sendto|tcp_sendmsg|sys_recvfrom|serde_json|malloc|free|Semaphore|mpsc|wake)", re.I)
    # Runtime and closure frames wrap everything; they say nothing about where time goes.
    wrapper = re.compile(r"^(catch_unwind|do_call|poll_future|poll_inner|with_mut|poll<|poll$|call_once|\{|run_task|"
                         r"budget|with_budget|tokio::runtime|std::|core::ops|__rust|<core::future)")
    shown = 0
    for s, n in inclusive.most_common():
        if keep.search(s) and not wrapper.search(s) and "{{closure}}" not in s and 100 * n / samples >= 2:
            print(f"{100 * n / samples:>5.1f}%  {s[:150]}")
            shown += 1
        if shown == 25:
            break
    print("\nhottest functions (self):")
    for s, n in self_.most_common(15):
        print(f"{100 * n / samples:>5.1f}%  {s[:150]}")


heap() if mode == "heap" else cpu()
