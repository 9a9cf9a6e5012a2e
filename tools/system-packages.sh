#!/usr/bin/env bash
# The servers the tests and the demo start throwaway, installed from Debian's packages
# when they are missing: PostgreSQL and MariaDB server binaries, php-cli (config.php read
# the way Moodle reads it), for the tests' report check Chromium, and Prometheus's node exporter.
#   tools/system-packages.sh demo|test
# Without root or apt it only says what is missing; the tests then fail where CI is set
# and skip otherwise.
set -euo pipefail
want=()
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && ! command -v initdb >/dev/null 2>&1; then
    want+=(postgresql)
fi
if [ "${1:-test}" = test ]; then
    if ! command -v mariadbd >/dev/null 2>&1 && [ ! -x /usr/sbin/mariadbd ] && ! command -v mysqld >/dev/null 2>&1 \
            && [ ! -x /usr/sbin/mysqld ]; then
        want+=(mariadb-server)
    fi
    command -v php >/dev/null 2>&1 || want+=(php-cli)
    command -v chromium >/dev/null 2>&1 || want+=(chromium)
    command -v prometheus-node-exporter >/dev/null 2>&1 || want+=(prometheus-node-exporter)
fi
[ ${#want[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "[setup] missing: ${want[*]} (install them, e.g. 'sudo apt-get install ${want[*]}')" >&2
    exit 0
fi
echo "[setup] installing ${want[*]} from Debian's packages"
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${want[@]}" >/dev/null
