#!/usr/bin/env bash
# `make images`: build the task (CPU), task-gpu and airflow images with podman (or docker), tagged as the node
# pools file and the Helm chart name them (<registry>/task:<version>, ...), then print their sizes.
#   ENGINE=podman|docker  REGISTRY=ghcr.io/mlpipe  VERSION=<pyproject's>  images/build.sh
# Where the public base images cannot be pulled (no container registry reachable, as on CI's machines), the
# images are built on a Python base made from Debian packages (images/debian-base.sh) instead.
set -euo pipefail
cd "$(dirname "$0")/.."

engine=${ENGINE:-podman}
registry=${REGISTRY:-ghcr.io/mlpipe}
version=${VERSION:-$(sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)}
command -v "$engine" >/dev/null || {
  echo "$engine is missing: apt-get install -y podman buildah mmdebstrap runc (or set ENGINE=docker)" >&2; exit 1; }

build_args=()
flags=()
[[ $engine == podman ]] && flags+=(--layers=false)  # one layer per image: twice as fast to build here
if ! "$engine" pull -q docker.io/library/python:3.11.14-slim-bookworm >/dev/null 2>&1; then
  echo "no container registry answers: building on a Python base made from Debian packages"
  images/debian-base.sh "$engine" localhost/mlpipe/debian-python:3.11
  build_args+=(--build-arg BASE=localhost/mlpipe/debian-python:3.11)
fi

build() {  # build <image> <Dockerfile> [build args...]
  local image=$1 dockerfile=$2 started=$SECONDS
  shift 2
  "$engine" build "${flags[@]}" "${build_args[@]}" "$@" -f "$dockerfile" -t "$registry/$image:$version" . \
    > ".state/images/$image.log" 2>&1 \
    || { tail -n 40 ".state/images/$image.log"; echo "building $image failed: .state/images/$image.log" >&2; exit 1; }
  echo "built $registry/$image:$version in $((SECONDS - started)) s"
}

mkdir -p .state/images
build task images/task/Dockerfile
build task-gpu images/task/Dockerfile --build-arg DEVICE=cuda
build airflow images/airflow/Dockerfile
"$engine" image prune -f >/dev/null  # the images these tags pointed at before
for image in task task-gpu airflow; do
  printf '%-40s %s\n' "$registry/$image:$version" "$("$engine" images --format '{{.Size}}' "$registry/$image:$version")"
done
