# Sourced by ferry's example and demo scripts: a throwaway OpenSSH server on 127.0.0.1.
#   start_sshd NAME  starts sshd under $WORK/NAME with a new host key and a new client key, and
#                    sets SSH_PORT, SSH_KEY (the client's private key) and SSH_KNOWN_HOSTS (a
#                    known_hosts file recording the host key: ferry verifies it, as ssh does)
#   stop_sshds       stops them all (run from an EXIT trap)
# It logs in root with the client key only, forwards to unix sockets (what ferry send uses
# to reach a docker daemon) and serves SFTP. $WORK must be set. Needs root, as sshd does.

_ferry_sshds=()

start_sshd() {
  local dir=$WORK/$1 port
  mkdir -p "$dir" /run/sshd
  ssh-keygen -q -t ed25519 -N '' -C "ferry $1 host" -f "$dir/host_key"
  ssh-keygen -q -t ed25519 -N '' -C "ferry $1 client" -f "$dir/client_key"
  cp "$dir/client_key.pub" "$dir/authorized_keys"
  cat >"$dir/sshd_config" <<EOF
PidFile $dir/pid
HostKey $dir/host_key
AuthorizedKeysFile $dir/authorized_keys
StrictModes no
UsePAM no
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
AllowStreamLocalForwarding yes
Subsystem sftp internal-sftp
EOF
  for _ in $(seq 20); do
    port=$((20000 + RANDOM % 40000))
    ss -Htln "sport = :$port" | grep -q . && continue
    /usr/sbin/sshd -D -e -f "$dir/sshd_config" -p "$port" -o ListenAddress=127.0.0.1 >"$dir/log" 2>&1 &
    _ferry_sshds+=("$!")
    for _ in $(seq 40); do
      if timeout 1 bash -c "exec 3<>/dev/tcp/127.0.0.1/$port && head -c 8 <&3" 2>/dev/null | grep -q '^SSH-2.0-'; then
        echo "[127.0.0.1]:$port $(cut -d' ' -f1,2 "$dir/host_key.pub")" >"$dir/known_hosts"
        SSH_PORT=$port SSH_KEY=$dir/client_key SSH_KNOWN_HOSTS=$dir/known_hosts
        return
      fi
      kill -0 "$!" 2>/dev/null || break # the port was taken after all: try another
      sleep 0.25
    done
  done
  echo "sshd $1 did not start; its log:" >&2
  tail -20 "$dir/log" >&2
  return 1
}

stop_sshds() {
  local pid
  for pid in "${_ferry_sshds[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${_ferry_sshds[@]}"; do wait "$pid" 2>/dev/null || true; done
}
