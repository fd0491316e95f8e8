#!/usr/bin/env python3
"""Where a fleet run's CPU goes, split the way docs/BENCHMARKS.md reports it.

Reads `perf script -F comm,tid,ip,sym` output (a `perf record -a -g` of the machine) on stdin
and prints:
  - the share of samples per thread class (shoal's threads are named: readers `hs-*`/`dial-*`,
    writers `peer-w-*`, disk threads `disk-*`, the session `bfetch`; others by name),
  - the share per system call and thread class (the innermost `__x64_sys_*` frame),
  - the top symbols (leaf frames).

With `--wakeups SECONDS`, instead samples the voluntary and involuntary context switches of
every `bfetch` thread from /proc over SECONDS and prints them per second and thread class
(a running fleet is needed; nothing is read from stdin).
"""
import collections
import os
import sys
import time


def thread_class(comm):
    if comm.startswith(("hs-", "dial-")):
        return "reader"
    if comm.startswith("peer-w"):
        return "writer"
    if comm.startswith("disk-"):
        return "disk"
    if comm.startswith("kworker"):
        return "kworker"
    return comm


def stacks(lines):
    """(comm, [frames, leaf first]) per sample of `perf script -F comm,tid,ip,sym`."""
    comm, frames = None, []
    for line in lines:
        if not line.strip():
            if frames:
                yield comm, frames
            comm, frames = None, []
        elif not line[0].isspace():
            comm, frames = line.rsplit(None, 1)[0].strip(), []
        else:
            parts = line.split(None, 1)
            frames.append(parts[1].strip() if len(parts) > 1 else "?")
    if frames:
        yield comm, frames


INLINED = {"do_readv": "readv", "do_writev": "writev", "do_preadv": "preadv", "do_pwritev": "pwritev"}


def report(lines, top=25):
    by_class, by_call, by_leaf = collections.Counter(), collections.Counter(), collections.Counter()
    total = 0
    for comm, frames in stacks(lines):
        total += 1
        cls = thread_class(comm)
        by_class[cls] += 1
        by_leaf[frames[0]] += 1
        if "entry_SYSCALL_64_after_hwframe" in frames:
            call = next((f for f in frames if f.startswith(("__x64_sys_", "__do_sys_"))), None)
            # Vectored calls (readv, pwritev) are inlined without a __x64_sys_ frame.
            call = call or next((INLINED[f] for f in frames if f in INLINED), "(syscall entry/exit)")
            by_call[(cls, call.replace("__x64_sys_", "").replace("__do_sys_", ""))] += 1
    if not total:
        sys.exit("profile.py: no samples on stdin")
    pct = lambda n: 100.0 * n / total
    print("%d samples" % total)
    print("\n%-12s %7s" % ("threads", "% all"))
    for cls, n in by_class.most_common(top):
        print("%-12s %7.2f" % (cls, pct(n)))
    print("\n%-12s %-24s %7s" % ("threads", "system call", "% all"))
    for (cls, call), n in by_call.most_common(top):
        print("%-12s %-24s %7.2f" % (cls, call, pct(n)))
    print("\n%7s  %s" % ("% all", "leaf symbol"))
    for sym, n in by_leaf.most_common(top):
        print("%7.2f  %s" % (pct(n), sym[:100]))


def switches():
    counts = collections.Counter()
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if open("/proc/%s/comm" % pid).read().strip() != "bfetch":
                continue
            for tid in os.listdir("/proc/%s/task" % pid):
                base = "/proc/%s/task/%s/" % (pid, tid)
                cls = thread_class(open(base + "comm").read().strip())
                for line in open(base + "status"):
                    if line.startswith("voluntary_ctxt_switches:"):
                        counts[(cls, "voluntary")] += int(line.split()[1])
                    elif line.startswith("nonvoluntary_ctxt_switches:"):
                        counts[(cls, "involuntary")] += int(line.split()[1])
        except OSError:
            continue  # a process or thread that ended meanwhile
    return counts


def wakeups(seconds):
    a = switches()
    time.sleep(seconds)
    b = switches()
    print("%-12s %-12s %10s" % ("threads", "switches", "per second"))
    for key in sorted(b):
        print("%-12s %-12s %10.0f" % (key[0], key[1], (b[key] - a.get(key, 0)) / seconds))


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--wakeups":
        wakeups(float(sys.argv[2]))
    elif len(sys.argv) == 1:
        report(sys.stdin)
    else:
        sys.exit("usage: profile.py < perf-script-output | profile.py --wakeups SECONDS")
