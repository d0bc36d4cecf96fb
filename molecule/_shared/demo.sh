#!/usr/bin/env bash
# The local demo host behind `make demo` and `make demo-destroy`.
#
#   demo.sh up     start (or reuse) the container, deploy site.yml over SSH,
#                  print a user and the curl lines that use the API
#   demo.sh host   only start (or reuse) the container and wait for SSH
#   demo.sh down   remove the container and the demo's generated secrets
#
# The host is a Debian container with systemd, reached like a server: SSH on
# 127.0.0.1:$DEMO_SSH_PORT, HTTPS on 127.0.0.1:8443, HTTP on 127.0.0.1:8080.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
export CONTAINERS_CONF="${CONTAINERS_CONF:-$here/containers.conf}"

name="${DEMO_CONTAINER:-drf-demo}"
image="localhost/drf-target:bookworm"
ssh_port="${DEMO_SSH_PORT:-2222}"
https_port=8443
http_port=8080
state="$repo/build/demo"
secrets="$repo/inventory/demo/.secrets"
key="$state/id_ed25519"
ssh_opts=(-i "$key" -p "$ssh_port" -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null
          -o LogLevel=ERROR -o ConnectTimeout=3 -o BatchMode=yes)

host() {
  mkdir -p "$state"
  [ -f "$key" ] || ssh-keygen -q -t ed25519 -N '' -C drf-demo -f "$key"
  # sshd in the container reads the mounted key as the login user.
  chmod 0644 "$key.pub"

  if podman container exists "$name"; then
    podman start "$name" >/dev/null 2>&1 || true
    # podman may still call a container running whose processes are gone
    # (its monitor was killed, as when the machine is restored from a
    # snapshot); it can neither start nor stop such a container, only
    # replace it. The demo's data goes with it; its secrets stay, so the
    # deploy below recreates the same user and password.
    if ! podman exec "$name" true 2>/dev/null; then
      echo "container $name does not run (podman says" \
        "$(podman inspect --format '{{.State.Status}}' "$name")): replacing it" >&2
      podman rm --force --time 0 "$name" >/dev/null
    fi
  fi

  if ! podman container exists "$name"; then
    local extra=()
    # See create.yml: on hybrid cgroup hosts systemd needs the cgroup2 tree.
    if findmnt --noheadings --types cgroup2 /sys/fs/cgroup/unified >/dev/null 2>&1; then
      extra+=(--volume /sys/fs/cgroup/unified:/sys/fs/cgroup/unified)
    fi
    # CAP_SYS_ADMIN lets systemd build service sandboxes, as on a machine;
    # CAP_NET_ADMIN lets the firewall role load its rules.
    podman run --detach --systemd=always --cap-add=SYS_ADMIN --cap-add=NET_ADMIN --name "$name" --hostname "$name" \
      --volume "$key.pub:/home/ops/.ssh/authorized_keys:ro" \
      --publish "127.0.0.1:$ssh_port:22" \
      --publish "127.0.0.1:$https_port:443" \
      --publish "127.0.0.1:$http_port:80" \
      "${extra[@]}" "$image" >/dev/null
    echo "started container $name"
  fi

  echo "waiting for SSH on 127.0.0.1:$ssh_port"
  local deadline=$((SECONDS + 120))
  until ssh "${ssh_opts[@]}" ops@127.0.0.1 true 2>/dev/null; do
    if [ $SECONDS -ge $deadline ]; then
      echo "SSH did not answer within 120 s" >&2
      exit 1
    fi
    sleep 0.5
  done
}

# $1 as one single-quoted shell word, for lines printed to be pasted.
single_quoted() {
  local quote="'" escaped="'\\''"
  printf "'%s'" "${1//$quote/$escaped}"
}

# DEMO_USERNAME and DEMO_PASSWORD, when given, are kept beside the demo's
# other secrets, where the inventory reads them: every later run, `make demo`
# or a plain ansible-playbook, keeps the user they chose.
remember_demo_user() {
  (
    umask 077
    mkdir -p "$secrets"
    if [ -n "${DEMO_USERNAME:-}" ]; then
      printf '%s\n' "$DEMO_USERNAME" >"$secrets/demo_username"
    fi
    if [ -n "${DEMO_PASSWORD:-}" ]; then
      # Ansible's password lookup strips trailing blanks and reads " salt="
      # as its own field: such a password would not be the one set.
      case "$DEMO_PASSWORD" in
        *[[:space:]] | *" salt="* | *" ident="*)
          echo "DEMO_PASSWORD may not end in a blank or contain ' salt=' or ' ident='" >&2
          exit 2 ;;
      esac
      printf '%s\n' "$DEMO_PASSWORD" >"$secrets/demo_password"
    fi
  )
}

up() {
  remember_demo_user
  host
  (cd "$repo" && DEMO_SSH_PORT="$ssh_port" ansible-playbook -i inventory/demo playbooks/site.yml)

  # The demo certificate is self-signed: fetch it so curl can verify it.
  ssh "${ssh_opts[@]}" ops@127.0.0.1 sudo cat /etc/nginx/tls/localhost.crt >"$state/localhost.crt"

  local username=demo password
  if [ -f "$secrets/demo_username" ]; then
    username="$(cat "$secrets/demo_username")"
  fi
  password="$(cat "$secrets/demo_password")"
  local login
  # JSON-encoded, then shell-quoted in the printed lines: a password may
  # hold quotes or backslashes.
  login="$(python3 -c 'import json, sys; print(json.dumps({"username": sys.argv[1], "password": sys.argv[2]}))' \
    "$username" "$password")"
  local curl_base="curl --silent --show-error --cacert $state/localhost.crt"

  # Prove the lines printed below work before printing them.
  local access
  access="$($curl_base -H 'Content-Type: application/json' -d "$login" \
    "https://localhost:$https_port/api/token/" \
    | python3 -c 'import json, sys; print(json.load(sys.stdin)["access"])')"
  $curl_base --fail -H "Authorization: Bearer $access" "https://localhost:$https_port/api/me/" >/dev/null

  cat <<EOF

The demo is up: https://localhost:$https_port (HTTP on http://localhost:$http_port)

  user:     $username
  password: $password

Obtain a token pair, then call /api/me/ with the access token:

  ACCESS=\$($curl_base -H 'Content-Type: application/json' \\
    -d $(single_quoted "$login") \\
    https://localhost:$https_port/api/token/ | python3 -c 'import json,sys; print(json.load(sys.stdin)["access"])')
  $curl_base -H "Authorization: Bearer \$ACCESS" https://localhost:$https_port/api/me/

Run \`make demo\` again to update this host, \`make demo-destroy\` to remove it.
EOF
}

down() {
  podman rm --force --time 0 "$name" >/dev/null 2>&1 || true
  rm -rf "$state" "$secrets"
  echo "removed $name"
}

case "${1:-}" in
  up) up ;;
  host) host ;;
  down) down ;;
  *) echo "usage: $0 up|host|down" >&2; exit 2 ;;
esac
