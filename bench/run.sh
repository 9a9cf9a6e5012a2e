#!/usr/bin/env bash
# One command for the generator benchmark on a fresh machine: installs nginx, wrk and hey
# (Debian), makes bench/.venv with the toolkit's requirements and Locust, then runs
# bench/generators.py (arguments are passed on, e.g. --quick). Writes bench/results/generators.md.
set -euo pipefail
cd "$(dirname "$0")/.."
missing=()
for tool in nginx wrk hey taskset; do
    command -v "$tool" >/dev/null 2>&1 || [ -x "/usr/sbin/$tool" ] || missing+=("$tool")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "[bench] installing ${missing[*]}"
    packages=$(printf '%s\n' "${missing[@]}" | sed 's/^taskset$/util-linux/')
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $packages >/dev/null
fi
if [ ! -x bench/.venv/bin/locust ] || [ requirements.txt -nt bench/.venv/.installed ]; then
    [ -x bench/.venv/bin/python ] || python3 -m venv bench/.venv
    bench/.venv/bin/python -m pip install -q --disable-pip-version-check -r requirements.txt locust
    touch bench/.venv/.installed
fi
exec bench/.venv/bin/python bench/generators.py "$@"
