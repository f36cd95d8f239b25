# Helpers shared by the bench scripts, which source this file from the repo root.

# Reports a failed check on stderr, one line per argument, and exits 1. Stderr,
# because the check often runs in a function whose stdout `$(...)` captures.
fail() { printf '%s\n' "$@" >&2; exit 1; }

# A free TCP port on 127.0.0.1.
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# utime+stime of process $1, in clock ticks.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

# Memory of process $1 in MB: field $2 of /proc/PID/status (VmRSS, VmHWM).
mem_mb() { awk -v f="$2:" '$1 == f {printf "%.1f", $2 / 1024}' "/proc/$1/status"; }

# Writes wrk Lua script $1 sending GET /api/x with header $3 set to $4 followed by
# the lines of file $2 in turn (from a random start, so each wrk thread differs).
rotating_lua() {
  cat > "$1" <<LUA
local t = {}
for line in io.lines("$2") do t[#t + 1] = line end
local i = math.random(#t)
request = function()
  i = i % #t + 1
  return wrk.format("GET", "/api/x", { ["$3"] = "$4" .. t[i] })
end
LUA
}

# Writes the config of a benchmark's keygate to $1: the data plane on 127.0.0.1:$2,
# the admin listener on 127.0.0.1:$3, $4 threads, the upstream on 127.0.0.1:$5, the
# store $6 (a YAML mapping), a tier whose limits never bind and no IP limits ($7:
# more rate_limit settings, if any), then the YAML in $8 (routes, jwt, cache, ...).
bench_config() {
  cat > "$1" <<YAML
server: { listen: "127.0.0.1:$2", admin_listen: "127.0.0.1:$3", threads: $4 }
upstream: { url: "http://127.0.0.1:$5" }
store: $6
tiers:
  bench: { per_second: 100000000, per_minute: 1000000000, per_day: 100000000000 }
  pooled: { per_second: 100000000, per_minute: 1000000000, per_day: 100000000000, pool: account }
default_tier: bench
rate_limit: { ip: { per_minute: 0, failed_auth_per_minute: 0 }${7:+, $7} }
${8:-}
YAML
}

# Starts the benchmarks' upstream on core 0: one nginx worker answering `return 200`
# on 127.0.0.1:$2, its files in directory $1. Runs in the background.
start_nginx_upstream() {
  cat > "$1/upstream.conf" <<EOF
daemon off; master_process off; worker_processes 1;
pid $1/upstream.pid; error_log $1/upstream-error.log;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $1/ub; proxy_temp_path $1/up; fastcgi_temp_path $1/uf;
  uwsgi_temp_path $1/uu; scgi_temp_path $1/us;
  server { listen 127.0.0.1:$2; keepalive_requests 1000000; location / { return 200 "ok"; } }
}
EOF
  taskset -c 0 nginx -p "$1" -c "$1/upstream.conf" &
}
