#!/bin/sh
# Installs the Debian packages forkd needs on the host. Idempotent and silent
# when everything is already installed. As root it runs apt-get itself
# (apt-get update first only when a package is missing); otherwise it prints
# the exact command to run and exits non-zero.
set -eu

PACKAGES="qemu-system-x86 qemu-utils bubblewrap nftables util-linux mmdebstrap busybox-static zstd cpio xz-utils kmod e2fsprogs gcc libc6-dev make g++ python3 python3-venv curl openssl libnss-myhostname"

missing=""
for pkg in $PACKAGES; do
	status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
	case "$status" in
	*" installed") ;;
	*) missing="$missing $pkg" ;;
	esac
done
missing=${missing# }

# The guest kernel is fetched with `apt-get download`, which needs package lists.
need_lists=""
if ! apt-cache policy linux-image-amd64 2>/dev/null | grep -q 'Candidate: [0-9]'; then
	need_lists=1
fi

if [ -z "$missing" ] && [ -z "$need_lists" ]; then
	exit 0
fi

if [ -z "$missing" ]; then
	if [ "$(id -u)" -ne 0 ]; then
		echo "forkd needs apt package lists to fetch the guest kernel: run sudo apt-get update" >&2
		exit 1
	fi
	apt-get update -qq
	exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
	echo "forkd needs these packages: $missing" >&2
	echo "run: sudo apt-get update && sudo apt-get install -y --no-install-recommends $missing" >&2
	exit 1
fi

echo "installing: $missing"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# shellcheck disable=SC2086 # word splitting of the package list is intended
apt-get install -y -qq --no-install-recommends $missing >/dev/null
echo "done"
