#!/usr/bin/env python3
"""Several nodes writing one shared registry at once: three mounts of one shared database
(regfs on PostgreSQL, regfs on MariaDB, JuiceFS on PostgreSQL as the peer), each node for
--seconds overwriting one shared file, appending a line to one shared log, and creating,
renaming and removing files in one shared directory. Reported per system: operations per
second, errors by errno, and whether every acknowledged append is in the log. A benchmark,
not a test: nothing here passes or fails (tests/cluster.rs has the bounded test).

Run as root from the repository root:  python3 bench/hammer.py [--seconds 30]
It installs what it needs (as bench.py does), starts throwaway servers on loopback and builds
regfs in release mode. Results go to stdout and to bench/hammer.md (--out).
"""

import argparse
import collections
import errno
import os
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402  (the peers, servers and mounts of the main benchmark)

NODES = 3


def worker(k, base, seconds, counts, errors, appended):
    """Node k's loop on its own mount's view of the shared directory `base`."""
    deadline = time.monotonic() + seconds
    i = 0
    while time.monotonic() < deadline:
        tag = f"n{k}-{i}"
        steps = [
            ("overwrite", lambda: open(os.path.join(base, "shared.txt"), "w").write(tag)),
            ("append", lambda: open(os.path.join(base, "log"), "a").write(tag + "\n")),
            ("create", lambda: open(os.path.join(base, "d", f"{tag}.tmp"), "w").write(tag)),
            ("rename", lambda: os.rename(os.path.join(base, "d", f"{tag}.tmp"),
                                         os.path.join(base, "d", f"{tag}.xml"))),
            ("unlink", lambda: os.unlink(os.path.join(base, "d", f"{tag}.xml"))),
            ("list", lambda: os.listdir(os.path.join(base, "d"))),
        ]
        for what, step in steps:
            try:
                step()
                counts[what] += 1
                if what == "append":
                    appended.append(tag)
            except OSError as e:
                errors[(what, errno.errorcode.get(e.errno, str(e.errno)))] += 1
        i += 1


def hammer(name, mounts, seconds):
    bases = [os.path.join(m.workdir(), "hammer") for m in mounts]
    os.makedirs(os.path.join(bases[0], "d"))
    open(os.path.join(bases[0], "log"), "w").close()
    for b in bases:
        deadline = time.monotonic() + 30
        while not os.path.exists(os.path.join(b, "log")) and time.monotonic() < deadline:
            time.sleep(0.05)
    counts = collections.Counter()
    errors = collections.Counter()
    appended = []
    threads = [threading.Thread(target=worker, args=(k, b, seconds, counts, errors, appended))
               for k, b in enumerate(bases)]
    start = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    took = time.monotonic() - start
    # Every acknowledged append, once, as a node that did not write it reads the log.
    time.sleep(2)
    with open(os.path.join(bases[-1], "log")) as f:
        lines = collections.Counter(f.read().split())
    missing = sum(1 for tag in appended if lines[tag] == 0)
    doubled = sum(1 for tag in appended if lines[tag] > 1)
    total = sum(counts.values())
    bench.log(f"{name}: {total} operations in {took:.1f}s, {sum(errors.values())} errors, "
              f"{missing} appends missing")
    return {"ops": total, "secs": took, "counts": counts, "errors": errors,
            "appends": len(appended), "missing": missing, "doubled": doubled}


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=int, default=30)
    ap.add_argument("--systems", default="regfs-postgres,regfs-mariadb,juicefs-postgres")
    ap.add_argument("--out", default=os.path.join(bench.ROOT, "bench", "hammer.md"))
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("hammer: run as root (it mounts filesystems)")
    wanted = args.systems.split(",")
    bench.apt_install("fuse3", "postgresql", "mariadb-server", "mariadb-client")
    if "juicefs-postgres" in wanted:
        bench.ensure_juicefs()
    bench.ensure_regfs()

    base = tempfile.mkdtemp(prefix="regfs-hammer-")
    os.chmod(base, 0o755)
    dbs = bench.SharedDatabases(base)
    mounts = []
    results = {}
    try:
        for name in wanted:
            d = os.path.join(base, name)
            os.makedirs(d)
            nodes = dbs.mount_nodes(name, d, [f"n{k}" for k in range(NODES)], mounts)
            bench.log(f"{name}: {NODES} nodes for {args.seconds}s")
            results[name] = hammer(name, nodes, args.seconds)
            for m in nodes:
                m.unmount()
    finally:
        bench.tear_down(mounts, dbs, base)

    lines = ["# Several nodes writing at once", "",
             f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {bench.machine_description()}; "
             f"`python3 bench/hammer.py --seconds {args.seconds}`. {NODES} mounts of one shared "
             "database, each overwriting one file, appending to one log and creating, renaming, "
             "removing and listing in one directory, all at once.", "",
             "| system | operations/s | errors | appends acknowledged | missing | doubled |",
             "|---|---|---|---|---|---|"]
    for name, r in results.items():
        errs = ", ".join(f"{w} {e}: {n}" for (w, e), n in sorted(r["errors"].items())) or "0"
        lines.append(f"| {name} | {r['ops'] / r['secs']:.0f} | {errs} | {r['appends']} | "
                     f"{r['missing']} | {r['doubled']} |")
    report = "\n".join(lines) + "\n"
    print(report)
    with open(args.out, "w") as f:
        f.write(report)
    bench.log(f"wrote {args.out}")


if __name__ == "__main__":
    main()
