#!/usr/bin/env bash
# Build a Debian target image the way a fresh cloud server looks: debootstrap,
# systemd as PID 1, openssh-server, and an unprivileged login user "ops" with
# passwordless sudo. The login key is not baked in: each container mounts its
# own authorized key, as cloud-init would inject it.
#
# Usage: build-image.sh SUITE   (bookworm or trixie)
# The image is tagged localhost/drf-target:SUITE and rebuilt only when this
# script changes (its checksum is stored as an image label).
set -euo pipefail

suite="${1:?usage: build-image.sh SUITE}"
image="localhost/drf-target:${suite}"
here="$(cd "$(dirname "$0")" && pwd)"
export CONTAINERS_CONF="${CONTAINERS_CONF:-${here}/containers.conf}"
stamp="$(sha256sum "$0" | cut -c1-16)"

if [ "$(podman image inspect --format '{{ index .Labels "drf.build" }}' "$image" 2>/dev/null || true)" = "$stamp" ]; then
  echo "image ${image} is up to date"
  exit 0
fi

# Use the mirror this machine's apt already uses, unless told otherwise, so
# the build works wherever apt works.
mirror="${DEBIAN_MIRROR:-}"
if [ -z "$mirror" ]; then
  mirror="$(grep -rhoE '^(URIs:|deb) +https?://[^ ]+/debian/?( |$)' /etc/apt/sources.list /etc/apt/sources.list.d/ 2>/dev/null \
    | head -n1 | awk '{print $2}' || true)"
fi
: "${mirror:?cannot find a Debian mirror in /etc/apt; set DEBIAN_MIRROR}"

root="$(mktemp -d /var/tmp/drf-rootfs.XXXXXX)"
trap 'rm -rf "$root"' EXIT

echo "debootstrap ${suite} from ${mirror} into ${root}"
debootstrap --variant=minbase \
  --include=systemd,systemd-sysv,dbus,openssh-server,sudo,python3,ca-certificates,iproute2,procps,libpam-systemd \
  "$suite" "$root" "$mirror" >"${root}.log" 2>&1 \
  || { tail -n 40 "${root}.log"; echo "debootstrap failed; its whole log is kept in ${root}.log" >&2; exit 1; }
rm -f "${root}.log"

# Every container must get its own machine id and SSH host keys at first boot,
# just like instances started from one cloud image.
: >"$root/etc/machine-id"
rm -f "$root"/etc/ssh/ssh_host_*
mkdir -p "$root/etc/systemd/system/ssh.service.d"
cat >"$root/etc/systemd/system/ssh.service.d/host-keys.conf" <<'EOF'
[Service]
# Host keys must exist before the unit's own config test runs.
ExecStartPre=
ExecStartPre=/usr/bin/ssh-keygen -A
ExecStartPre=/usr/sbin/sshd -t
EOF
ln -sf /lib/systemd/system/ssh.service "$root/etc/systemd/system/multi-user.target.wants/ssh.service"

# Consoles do not exist in a container.
for unit in getty@tty1.service console-getty.service; do
  ln -sf /dev/null "$root/etc/systemd/system/${unit}"
done

chroot "$root" useradd --create-home --shell /bin/bash ops
install -d -m 0700 -o "$(chroot "$root" id -u ops)" -g "$(chroot "$root" id -g ops)" "$root/home/ops/.ssh"
echo 'ops ALL=(ALL) NOPASSWD:ALL' >"$root/etc/sudoers.d/ops"
chmod 0440 "$root/etc/sudoers.d/ops"
cat >"$root/etc/ssh/sshd_config.d/10-cloud.conf" <<'EOF'
PasswordAuthentication no
PermitRootLogin no
EOF

# An empty apt cache keeps the image small; the first apt run refreshes it.
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin

tar -C "$root" -c . | podman import \
  --change 'CMD ["/sbin/init"]' \
  --change "LABEL drf.build=${stamp}" \
  --change 'STOPSIGNAL SIGRTMIN+3' \
  - "$image" >/dev/null
echo "built ${image}"
