#!/usr/bin/env bash
# Make a Python 3.11 base image from Debian bookworm packages, for a machine that reaches Debian's and PyPI's
# package registries but no container registry (so `python:3.11.14-slim-bookworm` cannot be pulled):
#   images/debian-base.sh <engine> <tag>      e.g.  images/debian-base.sh podman localhost/mlpipe/debian-python:3.11
#
# mmdebstrap installs a minimal bookworm (the `apt` variant) with Python 3.11 and what the Dockerfiles use
# (venv, CA certificates, useradd), from the mirrors this machine's apt uses, without docs, man pages,
# translations, and usrmerge with the Perl it pulls in (~50 MB; the tree is merged already), and streams it into
# `<engine> import`. The host's extra CA certificates (Debian keeps them in /usr/local/share/ca-certificates)
# are trusted inside, so that pip and uv reach PyPI from a build where the network passes through a TLS proxy.
# The result is a local build base only: push the images built on the public bases, never this one.
set -euo pipefail

engine=${1:?usage: images/debian-base.sh <engine> <tag>}
tag=${2:?usage: images/debian-base.sh <engine> <tag>}
packages=python3,python3-venv,ca-certificates,passwd,usr-is-merged
unwanted="usrmerge libfile-find-rule-perl libnumber-compare-perl libtext-glob-perl perl libperl5.36 perl-modules-5.36"
sources=/etc/apt/sources.list.d/debian.sources
mirrors=()
quiet=()
[[ $engine == podman ]] && quiet=(--quiet)
[[ -f $sources ]] && mirrors=("$sources")

command -v mmdebstrap >/dev/null || { echo "mmdebstrap is missing: apt-get install -y mmdebstrap" >&2; exit 1; }
mmdebstrap --quiet --variant=apt --include="$packages" --format=tar \
  --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-exclude=/usr/share/man/*' \
  --dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-exclude=/usr/share/info/*' \
  --customize-hook='for ca in /usr/local/share/ca-certificates/*.crt; do [ -e "$ca" ] && cp "$ca" "$1/usr/local/share/ca-certificates/"; done; true' \
  --customize-hook='chroot "$1" update-ca-certificates >/dev/null 2>&1' \
  --customize-hook="chroot \"\$1\" apt-get purge -y -qq $unwanted >/dev/null" \
  --customize-hook='rm -rf "$1"/var/cache/apt/* "$1"/var/lib/apt/lists/*' \
  bookworm - "${mirrors[@]}" </dev/null \
  | "$engine" import "${quiet[@]}" \
      --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
      --change 'ENV LANG=C.UTF-8' \
      --change 'ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt' \
      --change 'ENV UV_SYSTEM_CERTS=1' \
      --change 'CMD ["python3"]' \
      - "$tag" >/dev/null
echo "made $tag from Debian packages ($packages)"
