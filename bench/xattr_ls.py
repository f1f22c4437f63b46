#!/usr/bin/env python3
"""What serving extended attributes costs `ls -lR`: 10k cached files in 100 directories on
the embedded default, listed 7 times per mount (the first discarded), 3 mounts per variant,
variants interleaved: an older regfs binary (BEFORE), this one, and this one with -o xattr.

Run as root:  python3 bench/xattr_ls.py BEFORE_BINARY [AFTER_BINARY]
(AFTER_BINARY defaults to target/release/regfs). Prints medians and ratios against BEFORE.
"""

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def one_mount(binary, extra=()):
    base = tempfile.mkdtemp(prefix="regfs-xattr-ls-")
    mnt = os.path.join(base, "mnt")
    os.makedirs(mnt)
    subprocess.run([binary, "mount", *extra, "--data-dir", os.path.join(base, "data"), mnt],
                   check=True, stderr=subprocess.DEVNULL)
    try:
        tree = os.path.join(mnt, "_system", "governance", "b")
        os.makedirs(tree)
        for d in range(100):
            os.makedirs(os.path.join(tree, f"d{d}"))
            for f in range(100):
                with open(os.path.join(tree, f"d{d}", f"f{f}"), "w") as fh:
                    fh.write("x" * 64)
        times = []
        for _ in range(7):
            t = time.perf_counter()
            subprocess.run(["ls", "-lR", tree], stdout=subprocess.DEVNULL, check=True)
            times.append(time.perf_counter() - t)
        return statistics.median(times[1:])
    finally:
        subprocess.run(["umount", mnt], check=False)
        shutil.rmtree(base, ignore_errors=True)


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    before = sys.argv[1]
    after = sys.argv[2] if len(sys.argv) > 2 else os.path.join(ROOT, "target", "release", "regfs")
    variants = {"before": (before, ()), "after": (after, ()), "after -o xattr": (after, ("-o", "xattr"))}
    results = {k: [] for k in variants}
    for _ in range(3):
        for k, (binary, extra) in variants.items():
            results[k].append(one_mount(binary, extra))
    base = statistics.median(results["before"])
    for k, v in results.items():
        m = statistics.median(v)
        print(f"| {k} | {m:.3f} s | {m / base:.2f}x | {', '.join(f'{x:.3f}' for x in v)} |")


if __name__ == "__main__":
    main()
