#!/usr/bin/env bash
# Runs every regfs test suite: unit, store model, real FUSE mounts with real tools, on all three
# backends (SQLite, PostgreSQL, MariaDB). Installs what the suites need on a fresh Debian
# machine (the tools, and the PostgreSQL and MariaDB servers, which the tests start themselves
# in temp directories) and fails loudly when a prerequisite (root, /dev/fuse) is missing instead
# of skipping anything.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }
die() { printf 'test-all: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "the FUSE suites mount for real: run as root"
[ -c /dev/fuse ] || die "/dev/fuse is missing: this machine cannot run FUSE mounts"

# Tools the real-tool scenarios drive.
need=()
for tool in git python3 tar sed find grep diff fusermount3 sqlite3 getfattr setfacl script rsync; do
    command -v "$tool" >/dev/null 2>&1 || need+=("$tool")
done
# Database servers: the tests run initdb/postgres and mariadb-install-db/mariadbd themselves.
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql)
command -v mariadbd >/dev/null 2>&1 || need+=(mariadb-server)
command -v mariadb >/dev/null 2>&1 || need+=(mariadb-client)
if [ ${#need[@]} -gt 0 ]; then
    step "installing ${need[*]}"
    pkgs=()
    for t in "${need[@]}"; do
        case "$t" in
            find) pkgs+=(findutils) ;;
            diff) pkgs+=(diffutils) ;;
            fusermount3) pkgs+=(fuse3) ;;
            getfattr) pkgs+=(attr) ;;
            setfacl) pkgs+=(acl) ;;
            script) pkgs+=(bsdutils) ;;
            *) pkgs+=("$t") ;;
        esac
    done
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${pkgs[@]}"
fi

step "cargo fmt --check"
cargo fmt --check

step "cargo clippy --all-targets -- -D warnings"
cargo clippy --all-targets --quiet -- -D warnings

mkdir -p target
: > target/test-all.log
status=0
step "cargo test --all-targets (unit, stores on SQLite/PostgreSQL/MariaDB, FUSE mounts on SQLite)"
cargo test --no-fail-fast --all-targets 2>&1 | tee -a target/test-all.log || status=1
# The filesystem suites again with the node and shared databases on each server.
for backend in postgres mariadb; do
    step "filesystem suites with the databases on ${backend}"
    REGFS_TEST_BACKEND=$backend cargo test --no-fail-fast --test tools --test posix --test pending --test memory --test semantics --test authz 2>&1 \
        | tee -a target/test-all.log || status=1
done
# One closing line for the whole run.
passed=$(grep -Eo '^test result: .* ([0-9]+) passed' target/test-all.log | grep -Eo '[0-9]+ passed' | awk '{s+=$1} END {print s+0}')
failed=$(grep -Eo '^test result: .* ([0-9]+) failed' target/test-all.log | grep -Eo '[0-9]+ failed' | awk '{s+=$1} END {print s+0}')
echo
echo "regfs: ${passed} passed, ${failed} failed"
exit $status
