#!/bin/sh
# `make image`: build containers/Dockerfile with podman (or docker) on the pinned base
# (containers/images.lock's `base`), and, where Apptainer is installed, convert the image to a
# .sif with containers/deltatune.def. Prints the image and the config line that runs every rule
# in it (`container.image`); containers/README.md says how to publish it by digest.
#
# Environment (all optional):
#   BASE_IMAGE       the base to build on (default: images.lock's `base`)
#   TAG              the image's name (default: localhost/deltatune:<version>)
#   SIF              where the .sif goes (default: deltatune-<version>.sif here, git-ignored)
#   ENGINE           the container command (default: podman, else docker), with its global options
#   BUILD_OPTIONS    extra options for `build` (e.g. --ulimit nofile=20000:20000)
#   PIP_CERT         a CA bundle for a TLS-intercepting proxy, given to pip in the build
#   PIP_FIND_LINKS   a directory of local wheels pip may take (a CPU torch wheel of the locked version)
# Nothing else of the host's pip configuration reaches the image.
set -eu
cd "$(dirname "$0")/.."
VERSION=$(sed -n 's/^version = "\(.*\)"$/\1/p' pyproject.toml)
TAG=${TAG:-localhost/deltatune:$VERSION}
SIF=${SIF:-deltatune-$VERSION.sif}
BASE_IMAGE=${BASE_IMAGE:-$(sed -n 's/^base: //p' containers/images.lock)}
if [ -z "${ENGINE:-}" ]; then
    if command -v podman >/dev/null 2>&1; then ENGINE=podman
    elif command -v docker >/dev/null 2>&1; then ENGINE=docker
    else echo "make image: neither podman nor docker is installed" >&2; exit 1
    fi
fi

echo "building $TAG on $BASE_IMAGE with $ENGINE" >&2
case "$ENGINE" in
*docker*)
    # docker build takes no volumes: pip in the build reads no configuration (PyPI directly), and
    # BuildKit picks up containers/Dockerfile.dockerignore beside the Dockerfile by itself.
    # shellcheck disable=SC2086  # ENGINE and BUILD_OPTIONS are lists of words
    $ENGINE build ${BUILD_OPTIONS:-} --file containers/Dockerfile --build-arg BASE_IMAGE="$BASE_IMAGE" \
        --build-arg VERSION="$VERSION" --tag "$TAG" . >&2
    ;;
*)
    pip=$(mktemp -d)
    trap 'rm -rf "$pip"' EXIT
    wheels=""
    {
        echo "[global]"
        if [ -n "${PIP_CERT:-}" ]; then cp "$PIP_CERT" "$pip/ca.pem"; echo "cert = /run/deltatune-pip/ca.pem"; fi
        if [ -n "${PIP_FIND_LINKS:-}" ]; then
            echo "find-links = /run/deltatune-wheels"
            wheels="--volume $PIP_FIND_LINKS:/run/deltatune-wheels:ro"
        fi
    } >"$pip/pip.conf"
    # shellcheck disable=SC2086  # ENGINE, BUILD_OPTIONS and wheels are lists of words
    $ENGINE build ${BUILD_OPTIONS:-} --network host --file containers/Dockerfile \
        --ignorefile containers/Dockerfile.dockerignore --build-arg BASE_IMAGE="$BASE_IMAGE" \
        --build-arg VERSION="$VERSION" --build-arg PIP_CONFIG_FILE=/run/deltatune-pip/pip.conf \
        --volume "$pip:/run/deltatune-pip:ro" $wheels --tag "$TAG" . >&2
    ;;
esac

# shellcheck disable=SC2086  # ENGINE is a list of words
id=$($ENGINE image inspect --format '{{.Id}}' "$TAG")
echo "built $TAG (image id $id)"
if command -v apptainer >/dev/null 2>&1; then
    # deltatune.def reads the image saved as deltatune-<version>.tar in the directory it is built from
    sif=$(realpath "$SIF")
    repo=$PWD
    archive=$(mktemp -d)
    # shellcheck disable=SC2086
    $ENGINE save -o "$archive/deltatune-$VERSION.tar" "$TAG"  # docker's format, podman's default too
    (cd "$archive" && apptainer build --force "$sif" "$repo/containers/deltatune.def" >&2)
    rm -rf "$archive"
    echo "built $sif (sha256 $(sha256sum "$sif" | cut -d' ' -f1))"
    echo "to run every rule in it, add to your config:"
    echo "  container: {image: $sif}"
else
    echo "Apptainer is not installed here, so no .sif was made. To run every rule in this image on"
    echo "a machine with Apptainer, push it to a registry and name it by the digest the push reports:"
    echo "  $ENGINE tag $TAG REGISTRY/deltatune:$VERSION"
    case "$ENGINE" in
    *docker*)
        echo "  $ENGINE push REGISTRY/deltatune:$VERSION"
        echo "  $ENGINE inspect --format '{{index .RepoDigests 0}}' REGISTRY/deltatune:$VERSION   # REGISTRY/deltatune@sha256:..."
        echo "  then in your config:  container: {image: \"<what that printed>\"}"
        ;;
    *)
        echo "  $ENGINE push --digestfile digest REGISTRY/deltatune:$VERSION"
        echo "  then in your config:  container: {image: \"REGISTRY/deltatune@\$(cat digest)\"}"
        ;;
    esac
fi
