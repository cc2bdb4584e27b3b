#!/usr/bin/env bash
# Runs OpenSSH's sshd (Debian `openssh-server`) for the sftp tests: `sshd-test-server.sh DIR
# PORT` listens on 127.0.0.1:PORT with a host key and a client key generated into DIR (once),
# lets the current user in with DIR/client_ed25519 only (no password, no PAM), and serves SFTP
# in-process (internal-sftp). DIR/known_hosts lists the server; DIR/host_ed25519.pub is its
# `host-key` line. Stops with the process (run it under scripts/serve-until-eof.sh).
set -euo pipefail
dir="$1"
port="$2"
sshd="${SSHD:-/usr/sbin/sshd}"
mkdir -p "${dir}"
[[ -f "${dir}/host_ed25519" ]] || ssh-keygen -q -t ed25519 -N '' -C test-host -f "${dir}/host_ed25519"
[[ -f "${dir}/client_ed25519" ]] || ssh-keygen -q -t ed25519 -N '' -C test-client -f "${dir}/client_ed25519"
cp "${dir}/client_ed25519.pub" "${dir}/authorized_keys"
echo "[127.0.0.1]:${port} $(cut -d' ' -f1,2 "${dir}/host_ed25519.pub") test-host" >"${dir}/known_hosts"
cat >"${dir}/sshd_config" <<EOF
ListenAddress 127.0.0.1
HostKey ${dir}/host_ed25519
AuthorizedKeysFile ${dir}/authorized_keys
StrictModes no
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
Subsystem sftp internal-sftp
PidFile none
# Tests run in parallel and every restore opens its own connection: sshd's default (10
# unauthenticated connections, then random drops) would refuse some of them.
MaxStartups 200
MaxSessions 200
EOF
# Privilege separation directory (made by the package's service script otherwise).
mkdir -p /run/sshd 2>/dev/null || true
exec "${sshd}" -D -e -f "${dir}/sshd_config" -p "${port}"
