#!/usr/bin/env python3
"""Where a target's extra CPU per request goes, against its baseline, symbol by symbol.

`loadgen h2load --rounds 1` runs the target, then its baseline, in one process (server
threads named `srv-worker`). Sample that process with perf for both phases, then give this
script the two phases' time windows (seconds from the first sample) and request rates
(h2load's req/s, as loadgen prints them):

    ./target/release/loadgen h2load --scenario introspect-cached --rounds 1 \\
        --duration 12s --warmup 1s > run.txt &
    sleep 0.5; perf record -F 1999 -p "$(pgrep -f 'loadgen h2load')" -o phases.perf \\
        -- sleep 30; wait; cat run.txt
    perf script -i phases.perf -F comm,tid,time,ip,sym > phases.txt
    tools/profile/phase_diff.py phases.txt --target 1:12:77171 --baseline 14:25:92449

It prints each phase's server CPU per request (µs) and, per symbol, the target's and the
baseline's µs per request and their difference, largest first. The windows must lie inside
the phases: print `--buckets` to see the samples per second and where the phases change.
"""

import argparse
import collections
import re
import sys


def read_samples(path):
    """(seconds from the first sample, thread name, symbol) of each sample."""
    samples = []
    with open(path, encoding="utf-8", errors="replace") as lines:
        for line in lines:
            parts = line.split(None, 4)
            if len(parts) < 4:
                continue
            try:
                at = float(parts[2].rstrip(":"))
            except ValueError:
                continue
            symbol = parts[4].strip() if len(parts) > 4 else "?"
            samples.append((at, parts[0], re.sub(r"\+0x[0-9a-f]+$", "", symbol)))
    if not samples:
        sys.exit(f"{path}: no samples (perf script -F comm,tid,time,ip,sym)")
    start = samples[0][0]
    return [(at - start, thread, symbol) for at, thread, symbol in samples]


def window(text):
    try:
        low, high, rate = (float(x) for x in text.split(":"))
    except ValueError:
        raise argparse.ArgumentTypeError("FROM:TO:REQ_PER_S, e.g. 1:12:77171")
    if not (high > low and rate > 0):
        raise argparse.ArgumentTypeError("TO must be after FROM and the rate positive")
    return low, high, rate


def per_request(samples, thread, span, hz):
    """µs of `thread`'s CPU per request, per symbol, in the window `span`."""
    low, high, rate = span
    counts = collections.Counter(
        symbol for at, name, symbol in samples if name == thread and low <= at < high
    )
    scale = 1e6 / ((high - low) * rate * hz)
    return {symbol: n * scale for symbol, n in counts.items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("samples", help="perf script -F comm,tid,time,ip,sym output")
    parser.add_argument("--target", type=window, help="FROM:TO:REQ_PER_S")
    parser.add_argument("--baseline", type=window, help="FROM:TO:REQ_PER_S")
    parser.add_argument("--hz", type=float, default=1999, help="perf record -F (default 1999)")
    parser.add_argument("--thread", default="srv-worker", help="server threads' name")
    parser.add_argument("--top", type=int, default=50, help="symbols to print")
    parser.add_argument("--buckets", action="store_true", help="samples per second, by thread")
    args = parser.parse_args()
    samples = read_samples(args.samples)
    if args.buckets or not (args.target and args.baseline):
        seconds = collections.Counter(int(at) for at, name, _ in samples if name == args.thread)
        for second in sorted(seconds):
            print(f"{second:4d} {seconds[second]}")
        return
    target = per_request(samples, args.thread, args.target, args.hz)
    baseline = per_request(samples, args.thread, args.baseline, args.hz)
    print(f"server CPU per request: target {sum(target.values()):.2f} µs, "
          f"baseline {sum(baseline.values()):.2f} µs")
    print(f"{'target':>8} {'base':>8} {'diff':>8}  symbol")
    symbols = sorted(set(target) | set(baseline),
                     key=lambda s: baseline.get(s, 0) - target.get(s, 0))
    for symbol in symbols[: args.top]:
        a, b = target.get(symbol, 0.0), baseline.get(symbol, 0.0)
        print(f"{a:8.3f} {b:8.3f} {a - b:+8.3f}  {symbol[:120]}")


if __name__ == "__main__":
    main()
