# Sourced by scripts/infra.sh and scripts/cluster/*.sh: is a local TCP port being listened on?
#
# Read from /proc/net/tcp{,6}, never by connecting or binding. Our ports lie in the kernel's
# ephemeral range (32768-60999): a probe that connects to a port nobody listens on yet can be
# given that very port as its own source port and connect to itself (TCP self-connect). Its
# TIME_WAIT then holds the port and the server's bind fails ("Address already in use"); it
# happened to Kafka on 59092. A test bind is fooled by any client's TIME_WAIT on the number.
listening() { # port
  local hex
  hex=$(printf ':%04X' "$1")
  awk -v h="$hex" '$4 == "0A" && substr($2, length($2) - 4) == h { found = 1 }
                   END { exit !found }' /proc/net/tcp /proc/net/tcp6 2>/dev/null
}
# Nothing listens on the port any more (a killed server's socket lingers while it goes away).
port_free() { ! listening "$1"; }

# Keep the kernel from giving these port numbers to clients as their source ports
# (net.ipv4.ip_local_reserved_ports): a client connection that holds a server's port as its
# own end keeps the server from binding it (seen: a Redis client on 47106, a cluster node's
# bus port). Only adds to the list, and only where we may write it (root, a writable
# /proc/sys); elsewhere nothing changes, and the servers' binds are as likely as before.
reserve_ports() { # ports...
  local f=/proc/sys/net/ipv4/ip_local_reserved_ports current want p
  [ -w "$f" ] || return 0
  current=$(cat "$f" 2>/dev/null) || return 0
  want=$current
  for p in "$@"; do
    case ",$current," in *",$p,"*) ;; *) want="${want:+$want,}$p" ;; esac
  done
  [ "$want" = "$current" ] || printf '%s\n' "$want" >"$f" 2>/dev/null || true
}
