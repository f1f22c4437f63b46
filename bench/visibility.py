#!/usr/bin/env python3
"""How long a change made on one node takes to show on another: two mounts of one shared
database (regfs on PostgreSQL, the same with `[cache] open_trusts_feed`, regfs on MariaDB,
JuiceFS on PostgreSQL as the peer), a change
on node A, then node B polled (every 0.5 ms) until it shows. Reported as p50/p99 in ms per
change kind. A benchmark, not a test: nothing here passes or fails.

Run as root from the repository root:  python3 bench/visibility.py [--trials 100]
It installs what it needs (as bench.py does), starts throwaway servers on loopback and builds
regfs in release mode. Results go to stdout and to bench/visibility.md (--out).
"""

import argparse
import os
import subprocess
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402  (the peers, servers and mounts of the main benchmark)

KINDS = ["overwrite, then read", "create, then list + open", "delete, then ENOENT",
         "append, then stat size", "chmod, then stat", "permission deny, then refused"]

# The local account whose reads the permission kind watches (as the registry user of its name).
NOBODY = 65534


def wait_for(cond, limit=10.0):
    """Seconds until cond() holds, polled every 0.5 ms; None if it never did within limit."""
    start = time.monotonic()
    while True:
        try:
            if cond():
                return time.monotonic() - start
        except OSError:
            pass
        if time.monotonic() - start > limit:
            return None
        time.sleep(0.0005)


def trial(kind, a, b, i):
    """One change on A (in directory a) and B's view of it (directory b): seconds, or None."""
    name = f"f{i}"
    pa, pb = os.path.join(a, name), os.path.join(b, name)
    if kind == "create, then list + open":
        with open(pa, "w") as f:
            f.write("new\n")

        def seen():
            if name not in os.listdir(b):
                return False
            with open(pb) as f:
                return f.read() == "new\n"
        return wait_for(seen)
    # The other kinds change a file both nodes know already.
    with open(pa, "w") as f:
        f.write("old\n")
    if wait_for(lambda: open(pb).read() == "old\n") is None:
        return None
    os.stat(pb)
    if kind == "overwrite, then read":
        with open(pa, "w") as f:
            f.write("new!\n")
        return wait_for(lambda: open(pb).read() == "new!\n")
    if kind == "delete, then ENOENT":
        os.unlink(pa)

        def gone():
            try:
                os.stat(pb)
                return False
            except FileNotFoundError:
                return True
        return wait_for(gone)
    if kind == "append, then stat size":
        with open(pa, "a") as f:
            f.write("more\n")
        return wait_for(lambda: os.stat(pb).st_size == 9)
    if kind == "chmod, then stat":
        os.chmod(pa, 0o600)
        return wait_for(lambda: os.stat(pb).st_mode & 0o777 == 0o600)
    raise ValueError(kind)


def regfs_cli(config, *args, stdin=None):
    """`regfs ARGS --config CONFIG` (as an operator on node A), checked."""
    subprocess.run([bench.REGFS, *args, "--config", config], input=stdin, text=True,
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def as_nobody_until(path, refused, limit=10.0):
    """Seconds until a read of `path` by the local account nobody is refused (`refused`) or
    allowed (not `refused`), polled every 0.5 ms in a child process running as nobody; None
    if that never happened within `limit`. The clock starts when this is called."""
    start = time.monotonic()
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        try:
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            while time.monotonic() - start <= limit:
                try:
                    with open(path) as f:
                        f.read()
                    now_refused = False
                except PermissionError:
                    now_refused = True
                except OSError:
                    now_refused = None
                if now_refused is refused:
                    os.write(w, repr(time.monotonic() - start).encode())
                    break
                time.sleep(0.0005)
        finally:
            os._exit(0)
    os.close(w)
    got = b""
    while True:
        chunk = os.read(r, 64)
        if not chunk:
            break
        got += chunk
    os.close(r)
    os.waitpid(pid, 0)
    return float(got) if got else None


def permission_trials(name, a_config, b, trials):
    """`regfs perm deny` on node A's config, then node B refusing a read by nobody (mapped to
    the registry user nobody, in Internal/everyone): seconds per trial."""
    regfs_cli(a_config, "user", "add", "nobody", stdin="nobody-secret\n")
    d = os.path.join(b, "perm")
    os.makedirs(d, exist_ok=True)
    os.chmod(d, 0o755)
    f = os.path.join(d, "f.txt")
    with open(f, "w") as fh:
        fh.write("secret\n")
    os.chmod(f, 0o644)
    target = "/_system/governance/perm"
    times, lost = [], 0
    if as_nobody_until(f, refused=False) is None:
        sys.exit(f"visibility: {name}: nobody cannot read {f} to begin with")
    for _ in range(trials):
        regfs_cli(a_config, "perm", "deny", "Internal/everyone", target, "get")
        t = as_nobody_until(f, refused=True)
        if t is None:
            lost += 1
        else:
            times.append(t * 1000)
        regfs_cli(a_config, "perm", "revoke", "Internal/everyone", target, "get")
        if as_nobody_until(f, refused=False) is None:
            sys.exit(f"visibility: {name}: the revoke of the deny never showed on node B")
    return times, lost


def pct(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


def measure(name, a, b, trials, a_config=None):
    out = {}
    for kind in KINDS:
        if kind == "permission deny, then refused":
            if a_config is None:
                continue
            out[kind] = permission_trials(name, a_config, b, trials)
            times, lost = out[kind]
            bench.log(f"{name}: {kind}: p50 {statistics.median(times):.1f} ms, "
                      f"p99 {pct(times, 0.99):.1f} ms, {lost} not seen within 10 s")
            continue
        times, lost = [], 0
        d = f"v{KINDS.index(kind)}"
        os.makedirs(os.path.join(a, d), exist_ok=True)
        if wait_for(lambda: os.path.isdir(os.path.join(b, d))) is None:
            sys.exit(f"visibility: {name}: node B never saw the directory {d}")
        for i in range(trials):
            t = trial(kind, os.path.join(a, d), os.path.join(b, d), i)
            if t is None:
                lost += 1
            else:
                times.append(t * 1000)
        out[kind] = (times, lost)
        if times:
            bench.log(f"{name}: {kind}: p50 {statistics.median(times):.1f} ms, "
                      f"p99 {pct(times, 0.99):.1f} ms, {lost} not seen within 10 s")
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trials", type=int, default=100)
    ap.add_argument("--systems", default="regfs-postgres,regfs-postgres-trusting,regfs-mariadb,"
                    "juicefs-postgres")
    ap.add_argument("--out", default=os.path.join(bench.ROOT, "bench", "visibility.md"))
    ap.add_argument("--kinds", default="",
                    help="which change kinds to measure: words of their names, ';' between "
                    "kinds (e.g. 'permission;chmod'); all by default")
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("visibility: run as root (it mounts filesystems)")
    wanted = args.systems.split(",")
    parts = [p.strip() for p in args.kinds.split(";") if p.strip()]
    kinds = [k for k in KINDS if not parts or any(p in k for p in parts)]
    if not kinds:
        sys.exit(f"visibility: --kinds names none of: {', '.join(KINDS)}")
    KINDS[:] = kinds
    bench.apt_install("postgresql", "mariadb-server", "mariadb-client")
    if any(s.startswith("juicefs") for s in wanted):
        bench.ensure_juicefs()
    bench.ensure_regfs()

    base = tempfile.mkdtemp(prefix="regfs-visibility-")
    os.chmod(base, 0o755)
    dbs = bench.SharedDatabases(base)
    mounts = []
    results = {}
    try:
        for name in wanted:
            d = os.path.join(base, name)
            os.makedirs(d)
            nodes = dbs.mount_nodes(name, d, ("a", "b"), mounts)
            pair = [m.workdir() for m in nodes]
            bench.log(f"{name}: {args.trials} trials per change kind")
            a_config = getattr(nodes[0], "config", None)
            results[name] = measure(name, pair[0], pair[1], args.trials, a_config)
            for m in mounts[-2:]:
                m.unmount()
    finally:
        bench.tear_down(mounts, dbs, base)

    lines = ["# Visibility of a change on another node", "",
             f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {bench.machine_description()}, "
             f"{args.trials} trials per kind; `python3 bench/visibility.py`. Two mounts of one "
             "shared database; each cell is p50 / p99 in ms from the change returning on node A "
             "to node B showing it (B polled every 0.5 ms).", "",
             "| change on node A, seen on node B | " + " | ".join(results) + " |",
             "|---|" + "---|" * len(results)]
    for kind in KINDS:
        cells = []
        for name in results:
            if kind not in results[name]:
                cells.append("-")
                continue
            times, lost = results[name][kind]
            cell = (f"{statistics.median(times):.1f} / {pct(times, 0.99):.1f}" if times else "-")
            if lost:
                cell += f" ({lost} not seen in 10 s)"
            cells.append(cell)
        lines.append(f"| {kind} | " + " | ".join(cells) + " |")
    report = "\n".join(lines) + "\n"
    print(report)
    with open(args.out, "w") as f:
        f.write(report)


if __name__ == "__main__":
    main()
