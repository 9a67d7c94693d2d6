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
