#!/usr/bin/env bash
# Fetches PostgreSQL's own regression suite for the installed server (the source package of
# the same version, from a deb-src entry) and builds its regress.so with PGXS, into
# target/pg-regress/. Used by tests/tests/regress.rs; idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
out="$PWD/target/pg-regress"
bindir="$(ls -d /usr/lib/postgresql/15/bin 2>/dev/null || pg_config --bindir)"
pg_config="$bindir/pg_config"
[ -x "$pg_config" ] || pg_config="$(command -v pg_config)"
if [ -f "$out/regress.so" ] && [ -f "$out/refint.so" ] && [ -d "$out/regress/sql" ]; then
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "pg-regress-setup: run as root once (needs apt-get source and the server headers)" >&2
    exit 1
fi
package="postgresql-$("$pg_config" --version | sed -E 's/^PostgreSQL ([0-9]+).*/\1/')"
version="$(dpkg-query -W -f='${Version}' "$package")"
if ! apt-cache showsrc "$package" >/dev/null 2>&1 || [ -z "$(apt-cache showsrc "$package" 2>/dev/null)" ]; then
    echo "pg-regress-setup: adding deb-src entries"
    sed -e 's/^Types: deb$/Types: deb-src/' /etc/apt/sources.list.d/debian.sources \
        > /etc/apt/sources.list.d/heliosproxy-src.sources
    apt-get update -qq
fi
need=()
[ -f "/usr/include/postgresql/${package#postgresql-}/server/postgres.h" ] || need+=("postgresql-server-dev-${package#postgresql-}")
command -v dpkg-source >/dev/null 2>&1 || need+=(dpkg-dev)
command -v make >/dev/null 2>&1 || need+=(make)
if [ "${#need[@]}" -gt 0 ]; then
    # The headers of the installed server's own version when the archive has them (a newer
    # postgresql-server-dev would upgrade the server under the tests).
    pinned=("${need[@]/#postgresql-server-dev-${package#postgresql-}/postgresql-server-dev-${package#postgresql-}=$version}")
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${pinned[@]}" >/dev/null 2>&1 ||
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
# The source of the installed version, else the newest of the same major the mirror has:
# the suite runs directly and through the proxy alike, so only their difference counts.
mkdir -p "$out/download"
found=""
for v in "$version" $(apt-cache showsrc "$package" | awk '/^Version:/ {print $2}' | sort -rV); do
    rm -f "$out"/download/*
    if (cd "$out/download" && apt-get source -qq --download-only "$package=$v" >/dev/null 2>&1); then
        found="$v"
        break
    fi
done
[ -n "$found" ] || { echo "pg-regress-setup: no source of $package could be downloaded" >&2; exit 1; }
tarball="$(ls "$out"/download/*.orig.tar.* | head -1)"
# postgresql-15_15.18.orig.tar.bz2 holds postgresql-15.18/
top="postgresql-$(basename "$tarball" | sed -E 's/^[^_]+_([^.]+\.[^.]+)\.orig.*/\1/')"
rm -rf "$out/src" "$out/regress"
mkdir -p "$out/src"
tar xf "$tarball" -C "$out/src" "$top/src/test/regress" "$top/contrib/spi"
mv "$out/src/$top/src/test/regress" "$out/regress"
mkdir -p "$out/build"
# regress.so, and the contrib/spi trigger functions (autoinc, refint) the suite loads too.
cp "$out/regress/regress.c" "$out/src/$top/contrib/spi/autoinc.c" "$out/src/$top/contrib/spi/refint.c" "$out/build/"
rm -rf "$out/src"
printf 'MODULES = regress autoinc refint\nPG_CONFIG = %s\nPGXS := $(shell $(PG_CONFIG) --pgxs)\ninclude $(PGXS)\n' "$pg_config" \
    > "$out/build/Makefile"
make -s -C "$out/build" >/dev/null
cp "$out/build/autoinc.so" "$out/build/refint.so" "$out/"
cp "$out/build/regress.so" "$out/regress.so"
echo "pg-regress-setup: $package $found regression suite in $out (server $version)"
