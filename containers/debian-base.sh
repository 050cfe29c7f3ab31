#!/bin/sh
# A local stand-in for the CUDA base where no registry can be reached: Debian bookworm from
# debootstrap (minbase, Python 3.11 and venv, CA certificates) imported into podman as $1
# (default localhost/deltatune-smoke-base:bookworm). Used by `make container-smoke` and by the
# per-rule container test (tests/test_containers.py); needs root, podman, runc and debootstrap.
set -eu
BASE=${1:-localhost/deltatune-smoke-base:bookworm}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
PODMAN=${PODMAN:-podman --cgroup-manager=cgroupfs --runtime runc}
PATH="$PATH:/usr/sbin:/sbin"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates bookworm "$work/rootfs" "$MIRROR" \
    >"$work/debootstrap.log" 2>&1 || { tail -20 "$work/debootstrap.log" >&2; exit 1; }
tar -C "$work/rootfs" -cf "$work/rootfs.tar" .  # a file, not a pipe: sh has no pipefail
# shellcheck disable=SC2086  # PODMAN is a list of words
$PODMAN import --quiet "$work/rootfs.tar" "$BASE" >/dev/null
echo "$BASE"
