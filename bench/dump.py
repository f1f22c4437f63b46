#!/usr/bin/env python3
"""regfs dump / regfs load beside what an operator would otherwise use through the mount:
`tar cf` of the subtree (a backup) and `tar xf` into the mount (a restore), on regfs over the
embedded SQLite default and over PostgreSQL, the same tree of small files each time, side by
side in one run. Reported as the median seconds of --runs runs and as ratios (dump / tar cf,
load / tar xf). A benchmark, not a test: nothing here passes or fails.

What each carries differs: tar has content, modes, owners and times; a dump also has the
registry's metadata (properties, media types, descriptions, UUIDs, tags, ...), and a load
writes it back as Carbon's restore does, in one transaction per database.

Run as root from the repository root:  python3 bench/dump.py [--runs 3] [--files 5000]
It builds regfs in release mode and starts a throwaway PostgreSQL on loopback. Results go to
stdout and to bench/dump.md (--out).
"""

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402  (the mounts, servers and workloads of the main benchmark)

STEPS = ["tar cf (through the mount)", "regfs dump", "tar xf (into the mount)", "regfs load"]


def timed(cmd):
    start = time.monotonic()
    bench.run(cmd, stdout=subprocess.DEVNULL)
    return time.monotonic() - start


def one_system(name, m, source, work, args):
    """Times of each step over the runs, for the regfs mount `m` whose databases `source`
    (CLI arguments) names."""
    gov = m.workdir()
    tree = os.path.join(gov, "tree")
    bench.log(f"{name}: creating {args.files} files of {args.size} bytes in {args.dirs} dirs")
    bench.w_create(tree, args)
    times = {s: [] for s in STEPS}
    archive = os.path.join(work, f"{name}.tar")
    dump = os.path.join(work, f"{name}.xml")
    for i in range(args.runs):
        m.remount()  # cold: tar reads through a kernel cache that starts empty
        times[STEPS[0]].append(timed(["tar", "cf", archive, "-C", gov, "tree"]))
        times[STEPS[1]].append(timed([bench.REGFS, "dump", "/_system/governance/tree", dump]
                                     + source))
        untar = os.path.join(gov, f"untar{i}")
        os.makedirs(untar)
        times[STEPS[2]].append(timed(["tar", "xf", archive, "-C", untar]))
        times[STEPS[3]].append(timed([bench.REGFS, "load", dump, f"/_system/governance/load{i}"]
                                     + source))
        bench.log(f"{name}: run {i + 1}: " + ", ".join(
            f"{s} {times[s][-1]:.2f} s" for s in STEPS))
        shutil.rmtree(untar)
        shutil.rmtree(os.path.join(gov, f"load{i}"))
    size = os.path.getsize(dump)
    return times, size, os.path.getsize(archive)


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--files", type=int, default=5000)
    ap.add_argument("--dirs", type=int, default=50)
    ap.add_argument("--size", type=int, default=2048)
    ap.add_argument("--out", default=os.path.join(bench.ROOT, "bench", "dump.md"))
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("dump: run as root (it mounts filesystems)")
    bench.apt_install("postgresql")
    bench.ensure_regfs()
    base = tempfile.mkdtemp(prefix="regfs-dumpbench-")
    os.chmod(base, 0o755)
    dbs = bench.SharedDatabases(base)
    mounts, results = [], {}
    try:
        lite_dir = os.path.join(base, "regfs-sqlite")
        lite = bench.Regfs("regfs-sqlite", os.path.join(lite_dir, "mnt"),
                           data_dir=os.path.join(lite_dir, "data"))
        lite.mount()
        mounts.append(lite)
        results["regfs-sqlite"] = one_system(
            "regfs-sqlite", lite, ["--data-dir", lite.data_dir], lite_dir, args)
        lite.unmount()
        pg_dir = os.path.join(base, "regfs-postgres")
        os.makedirs(pg_dir)
        (pg,) = dbs.mount_nodes("regfs-postgres", pg_dir, ("a",), mounts)
        results["regfs-postgres"] = one_system(
            "regfs-postgres", pg, ["--config", pg.config], pg_dir, args)
        pg.unmount()
    finally:
        bench.tear_down(mounts, dbs, base)

    lines = ["# regfs dump / load beside tar through the mount", "",
             f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
             f"{bench.machine_description()}; `python3 bench/dump.py --runs {args.runs} "
             f"--files {args.files}`: {args.files} files of {args.size} bytes in {args.dirs} "
             f"directories. Median seconds of {args.runs} runs (min-max); tar reads through a "
             "freshly mounted (cold) regfs.", "",
             "| step | " + " | ".join(results) + " |", "|---|" + "---|" * len(results)]
    for step in STEPS:
        cells = []
        for name in results:
            v = results[name][0][step]
            cells.append(f"{statistics.median(v):.2f} ({min(v):.2f}-{max(v):.2f})")
        lines.append(f"| {step} | " + " | ".join(cells) + " |")
    for (a, b) in [(STEPS[1], STEPS[0]), (STEPS[3], STEPS[2])]:
        cells = [f"{statistics.median(results[n][0][a]) / statistics.median(results[n][0][b]):.2f}x"
                 for n in results]
        lines.append(f"| {a} / {b.split(' (')[0]} | " + " | ".join(cells) + " |")
    cells = [f"{results[n][1] / 1048576:.1f} / {results[n][2] / 1048576:.1f}" for n in results]
    lines.append("| dump / tar size (MiB) | " + " | ".join(cells) + " |")
    report = "\n".join(lines) + "\n"
    print(report)
    with open(args.out, "w") as f:
        f.write(report)


if __name__ == "__main__":
    main()
