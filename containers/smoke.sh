#!/bin/sh
# Container smoke test (`make container-smoke`, not part of `make test`): build containers/Dockerfile
# with podman (containers/image.sh) on a local base, Debian bookworm from debootstrap imported into
# podman, passed as BASE_IMAGE in place of the CUDA base, then run the tiny config inside the image,
# offline and as its non-root user. Prints the time of each step; containers/README.md records a run.
#
# PIP_CERT and PIP_FIND_LINKS reach pip in the build as containers/image.sh says. Where the wheel
# directory holds a CPU torch wheel of the locked version, pip takes it, as in `make setup`.
set -eu
cd "$(dirname "$0")/.."
PODMAN="podman --cgroup-manager=cgroupfs --runtime runc"
VERSION=$(sed -n 's/^version = "\(.*\)"$/\1/p' pyproject.toml)
BASE=localhost/deltatune-smoke-base:bookworm
IMAGE=localhost/deltatune:$VERSION-smoke
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}

PATH="$PATH:/usr/sbin:/sbin"
missing=""
for program in podman runc debootstrap; do
    command -v "$program" >/dev/null 2>&1 || missing="$missing $program"
done
if [ -n "$missing" ]; then
    echo "installing Debian's podman, runc and debootstrap (missing:$missing)" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends podman runc debootstrap >/dev/null
fi

work=$(mktemp -d)
cleanup() {
    rm -rf "$work"
    $PODMAN rmi --force "$IMAGE" "$BASE" >/dev/null 2>&1 || true
}
trap cleanup EXIT
step() { echo "== $1: $(($(date +%s) - start)) s" >&2; }

start=$(date +%s)
PODMAN="$PODMAN" DEBIAN_MIRROR="$MIRROR" containers/debian-base.sh "$BASE" >/dev/null
step "debootstrap bookworm imported as $BASE"

start=$(date +%s)
ENGINE="$PODMAN" BUILD_OPTIONS="--ulimit nofile=20000:20000 --ulimit nproc=32768:32768" BASE_IMAGE="$BASE" TAG="$IMAGE" SIF="$work/smoke.sif" \
    containers/image.sh >"$work/build.log" 2>&1 || { tail -40 "$work/build.log" >&2; exit 1; }
step "built $IMAGE ($($PODMAN image inspect --format '{{.Size}}' "$IMAGE") bytes, id $($PODMAN image inspect --format '{{.Id}}' "$IMAGE"))"

start=$(date +%s)
mkdir "$work/run"
chown 10001:10001 "$work/run"
$PODMAN run --rm --ulimit nofile=20000:20000 --ulimit nproc=32768:32768 --network none \
    --volume "$PWD:/repo:ro" --volume "$work/run:/work" "$IMAGE" \
    snakemake --snakefile /repo/Snakefile --directory /work --configfile /repo/tests/config/tiny.yaml --cores 2 \
    >"$work/run.log" 2>&1 || { tail -40 "$work/run.log" >&2; exit 1; }
step "tiny config run inside $IMAGE"
cat "$work/run/results/tiny/report/summary.csv"
