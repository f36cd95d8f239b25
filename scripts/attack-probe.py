#!/usr/bin/env python3
"""A round of outside attacks on a keygate binary, in front of real upstreams.

    python3 scripts/attack-probe.py [path/to/keygate]     (default target/debug/keygate)

Upstreams, started here:
  - node: Node's `http` routing with `new URL(req.url, base)` (as Node's docs show),
    Tomcat-style `;parameters` dropped per segment, one more percent-decoding with
    dot segments resolved, case-insensitive matching (Express), and method override
    by `X-HTTP-Method-Override` or `?_method=` (Express's method-override).
  - wsgi: Python's wsgiref, reporting the HTTP_X_AUTH_* variables a CGI/WSGI app sees.

Each probe says what an attacker should never get. Prints one line per probe class
with how many probes got through, then every probe that did; exits 1 if any did.
"""
import json, os, socket, subprocess, sys, tempfile, threading, time, urllib.request
from wsgiref.simple_server import make_server, WSGIRequestHandler

BIN = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else "target/debug/keygate")
NODE_ROUTER = r"""
const http = require('http');
const path = require('path');
http.createServer((req, res) => {
  const u = new URL(req.url, 'http://api.internal');
  let p = u.pathname.split('/').map(s => s.split(';')[0]).join('/');
  try { p = decodeURIComponent(p); } catch (e) {}
  p = path.posix.normalize(p).toLowerCase();
  const method = (req.headers['x-http-method-override'] || u.searchParams.get('_method') || req.method).toUpperCase();
  let area = 'other';
  if (p.startsWith('/api/admin')) area = 'admin';
  else if (p.startsWith('/api/search') && method === 'DELETE') area = 'search-delete';
  else if (p.startsWith('/public')) area = 'public';
  res.setHeader('content-type', 'application/json');
  res.end(JSON.stringify({area, path: p, method, raw: req.url}));
}).listen(+process.argv[1], '127.0.0.1');
"""


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wsgi_app(environ, start):
    # Identity as the app reads it; Grpc-Metadata-X-Auth-* too, which grpc-gateway,
    # in front of a gRPC service, turns into that service's x-auth-* metadata.
    seen = {k: v for k, v in environ.items()
            if k.startswith("HTTP_X_AUTH") or k.startswith("HTTP_GRPC_METADATA_")}
    start("200 OK", [("Content-Type", "application/json")])
    return [json.dumps(seen).encode()]


class Quiet(WSGIRequestHandler):
    def log_message(self, *args):
        pass


def raw(port, request, timeout=5):
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    s.sendall(request)
    out = b""
    try:
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            out += chunk
    except (socket.timeout, ConnectionResetError):
        pass
    s.close()
    head, _, body = out.partition(b"\r\n\r\n")
    status = int(head.split()[1]) if head.startswith(b"HTTP/") else 0
    try:
        return status, json.loads(body)
    except ValueError:
        return status, None


def get(port, target, key=None, extra=""):
    auth = f"X-API-Key: {key}\r\n" if key else ""
    req = f"GET {target} HTTP/1.1\r\nHost: x\r\n{auth}{extra}Connection: close\r\n\r\n"
    return raw(port, req.encode("latin-1"))


def start_keygate(work, upstream, extra):
    listen, admin = free_port(), free_port()
    conf = os.path.join(work, f"kg-{listen}.yaml")
    with open(conf, "w") as f:
        f.write(f"""server: {{ listen: "127.0.0.1:{listen}", admin_listen: "127.0.0.1:{admin}", grace_period: 1s }}
upstream: {{ url: "http://127.0.0.1:{upstream}" }}
store: {{ kind: sqlite, path: "{work}/keys.db" }}
jwt:
  issue: {{ alg: HS256, secret: "an-issuing-secret-of-at-least-32-bytes!!" }}
management: {{ registration: open }}
tiers:
  free: {{ per_minute: 100000, max_keys: 100 }}
  pro: {{ per_minute: 100000 }}
rate_limit: {{ ip: {{ per_minute: 0, failed_auth_per_minute: 0 }} }}
{extra}""")
    proc = subprocess.Popen([BIN, "serve", "-c", conf], stderr=open(conf + ".log", "w"))
    for _ in range(200):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{admin}/health", timeout=1)
            break
        except OSError:
            time.sleep(0.05)
    return proc, conf, listen


def cli_key(conf, *args):
    tier = [] if "--tier" in args else ["--tier", "free"]
    out = subprocess.run([BIN, "keys", "create", "-c", conf, "--json", "--name", "probe", *tier, *args],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout)["key"]


def api(port, method, path, body=None, key=None, token=None):
    headers = {"Content-Type": "application/json"}
    if key:
        headers["X-API-Key"] = key
    if token:
        headers["Authorization"] = f"Bearer {token}"
    req = urllib.request.Request(f"http://127.0.0.1:{port}/v1{path}", method=method, headers=headers,
                                 data=json.dumps(body).encode() if body is not None else None)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


PATHS = [
    "/public/api/admin/users", "//public/api/admin/users", "///public/api/admin/users",
    "/public//api/admin/users", "/public/../api/admin/users", "/public/./../api/admin/users",
    "/public/%2e%2e/api/admin/users", "/public/%2E%2E/api/admin/users", "/public/.%2e/api/admin/users",
    "/public/..;/api/admin/users", "/public/..;x=y/api/admin/users", "/public/.;/../api/admin/users",
    "/public;x/../api/admin/users", "/public/%2e%2e%3b/api/admin/users", "/public/..%3b/api/admin/users",
    "/public/%252e%252e/api/admin/users", "/public/%252e%252e%252fapi/admin/users",
    "/public/%c0%ae%c0%ae/api/admin/users", "/public%2f..%2fapi/admin/users", "/public/..%2fapi/admin/users",
    "/public/..%5capi/admin/users", "/public\\..\\api/admin/users", "/public/%2e%2e%5capi/admin/users",
    "/PUBLIC/../api/admin/users", "/public/..%00/api/admin/users", "/public/%00/../api/admin/users",
    "http://public/api/admin/users", "http://x/public/../api/admin/users", "//public%2fapi/admin/users",
    "/public/..%252f..%252fapi/admin/users", "/public/x/../../api/admin/users", "/public?/../api/admin/users",
    "/public#/../api/admin/users", "/public/%23/../api/admin/users", "/./public/../api/admin/users",
]
ADMIN_SPELLINGS = [
    "/api/admin/users", "/API/admin/users", "/api/ADMIN/users", "/Api/Admin", "/api/admin;x/users",
    "/api;x/admin/users", "/api/admin%3bx/users", "/api/ad%6din/users", "/api/%61dmin", "//api/admin/users",
    "/api//admin/users", "/api/./admin/users", "/api/x/../admin/users", "/api/admin%2fusers",
    "/x/../api/admin/users", "/api/admin/", "/api/admin", "/api/admin?x=1", "/api/adm%69n/",
]


def main():
    work = tempfile.mkdtemp()
    findings = {}
    node_port, wsgi_port = free_port(), free_port()
    node = subprocess.Popen(["node", "-e", NODE_ROUTER, str(node_port)])
    wsgi = make_server("127.0.0.1", wsgi_port, wsgi_app, handler_class=Quiet)
    threading.Thread(target=wsgi.serve_forever, daemon=True).start()
    time.sleep(0.5)
    routes = """routes:
  - { path: /public/*, auth: none }
  - { path: /api/admin/*, scopes: [admin] }
  - { path: /api/search, methods: [POST], scopes: [search], cost: 1 }
"""
    kg, conf, port = start_keygate(work, node_port, routes)
    kg2, _, wport = start_keygate(work, wsgi_port, routes)
    procs = [node, kg, kg2]
    try:
        plain = cli_key(conf)
        searcher = cli_key(conf, "--scopes", "search")

        def record(kind, probe, what):
            findings.setdefault(kind, []).append(f"{probe}: {what}")

        counts = {}
        for target in PATHS:
            counts["paths (anonymous)"] = counts.get("paths (anonymous)", 0) + 1
            status, body = get(port, target)
            if body and body.get("area") == "admin":
                record("paths (anonymous)", target, f"{status} reached admin as {body.get('path')}")
        for target in ADMIN_SPELLINGS + PATHS:
            counts["paths (key without admin)"] = counts.get("paths (key without admin)", 0) + 1
            status, body = get(port, target, plain)
            if body and body.get("area") == "admin":
                record("paths (key without admin)", target, f"{status} reached admin")
        method_probes = [
            ("GET", "/api/search", ""), ("HEAD", "/api/search", ""), ("PUT", "/api/search", ""),
            ("post", "/api/search", ""), ("DELETE", "/api/search", ""), ("GET", "/API/SEARCH", ""),
            ("GET", "/api/search", "X-HTTP-Method-Override: DELETE\r\n"),
            ("POST", "/api/search", "X-HTTP-Method-Override: DELETE\r\n"),
            ("GET", "/api/search?_method=DELETE", ""), ("OPTIONS", "/api/search", ""),
        ]
        for method, target, extra in method_probes:
            counts["methods (key without search)"] = counts.get("methods (key without search)", 0) + 1
            req = f"{method} {target} HTTP/1.1\r\nHost: x\r\nX-API-Key: {plain}\r\n{extra}Content-Length: 0\r\nConnection: close\r\n\r\n"
            status, body = raw(port, req.encode())
            if status < 300 and body and body.get("area") in ("other", "search-delete") and "search" in body.get("path", ""):
                record("methods (key without search)", f"{method} {target} {extra.strip()}", f"{status} served {body}")
        # A search key may POST search, never run the search DELETE upstream.
        for extra in ["X-HTTP-Method-Override: DELETE\r\n", "X-HTTP-Method-Override: delete\r\n"]:
            counts["methods (override)"] = counts.get("methods (override)", 0) + 1
            req = f"POST /api/search HTTP/1.1\r\nHost: x\r\nX-API-Key: {searcher}\r\n{extra}Content-Length: 0\r\nConnection: close\r\n\r\n"
            status, body = raw(port, req.encode())
            if body and body.get("area") == "search-delete":
                record("methods (override)", extra.strip(), f"{status} ran DELETE upstream")
        spoofs = ["X_Auth_Org: victim", "x_auth_org: victim", "X-Auth_Org: victim", "X_AUTH_ORG: victim",
                  "X-Auth-Org: victim", "x-auth-org: victim", "X_Auth_Subject: bob", "X_Auth_Scopes: admin",
                  "X_Auth_Tier: enterprise", "X-Auth-Key-Id: key_x", "X_Auth_Method: jwt", "X_Auth_Environment: test",
                  # grpc-gateway hands Grpc-Metadata-<name> to a gRPC service as metadata <name>.
                  "Grpc-Metadata-X-Auth-Org: victim", "grpc-metadata-x-auth-scopes: admin",
                  "Grpc_Metadata_X_Auth_Subject: bob", "Grpc-Metadata-Grpc-Metadata-X-Auth-Tier: enterprise"]
        wkey = cli_key(conf, "--org", "mine", "--owner", "me")
        for spoof in spoofs:
            for key, target in [(wkey, "/x"), (None, "/public/x")]:
                counts["identity header spellings"] = counts.get("identity header spellings", 0) + 1
                status, body = get(wport, target, key, spoof + "\r\n")
                value = spoof.split(": ", 1)[1]
                if body and any(value in v for v in body.values()):
                    record("identity header spellings", f"{target} {spoof}", f"WSGI saw {body}")
        # Management authorization as a self-registered user and as a keys:manage key.
        api(port, "POST", "/auth/register", {"email": "m@example.com", "password": "mallory-password"})
        _, tok = api(port, "POST", "/auth/token", {"email": "m@example.com", "password": "mallory-password"})
        token = tok["access_token"]
        manager = cli_key(conf, "--scopes", "keys:manage", "--owner", "alice", "--tier", "pro")
        _, me = api(port, "GET", "/keys", token=token)
        user_id = json.loads(__import__("base64").urlsafe_b64decode(token.split(".")[1] + "=="))["sub"]
        alice_or_user = {"user": user_id, "keys:manage key": "alice"}
        escalations = [{"scopes": ["admin"]}, {"scopes": ["keys:manage", "admin"]}, {"tier": "pro"},
                       {"credits": None}, {"expires_at": None}, {"org": "org_victim"}, {"owner": "bob"},
                       {"scopes": ["ADMIN"]}, {"scopes": ["admin "]}, {"scopes": [" admin"]}]
        for who, creds in [("user", {"token": token}), ("keys:manage key", {"key": manager})]:
            for body in escalations:
                counts["management escalation"] = counts.get("management escalation", 0) + 1
                status, answer = api(port, "POST", "/keys", {"name": "x", **body}, **creds)
                if status == 201:
                    record("management escalation", f"{who} POST {body}", f"201 {answer.get('scopes')} {answer.get('tier')}")
            # A key an operator granted them: metered, expiring, in the users' tier.
            owner = alice_or_user[who]
            granted = subprocess.run([BIN, "keys", "create", "-c", conf, "--json", "--name", "granted", "--tier", "free",
                                      "--owner", owner, "--credits", "5", "--expires-in", "30d"],
                                     capture_output=True, text=True, check=True)
            granted = json.loads(granted.stdout)
            for body in escalations[:6]:
                counts["management escalation"] += 1
                s2, answer = api(port, "PUT", f"/keys/{granted['id']}", body, **creds)
                field = next(iter(body))
                if s2 == 200 and answer.get(field) != granted.get(field):
                    record("management escalation", f"{who} PUT {body}", f"200, {field} now {answer.get(field)}")
            counts["management escalation"] += 1
            status, listed = api(port, "GET", "/keys", **creds)
            if status == 200 and any(k.get("owner") not in (None, "alice") and who != "user" for k in listed["api_keys"]):
                record("management escalation", f"{who} GET /keys", "saw another owner's keys")
        # Memory: 300 unfinished 1 MiB heads.
        def rss():
            with open(f"/proc/{kg.pid}/status") as f:
                return next(int(l.split()[1]) for l in f if l.startswith("VmRSS:")) / 1024
        before, peak = rss(), [0.0]
        stop = threading.Event()
        def sample():
            while not stop.is_set():
                peak[0] = max(peak[0], rss())
                time.sleep(0.02)
        sampler = threading.Thread(target=sample)
        sampler.start()
        def head():
            try:
                s = socket.create_connection(("127.0.0.1", port), timeout=10)
                s.sendall(b"GET /x HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"p" * (1024 * 1024))
                s.recv(100)
                s.close()
            except OSError:
                pass
        threads = [threading.Thread(target=head) for _ in range(300)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        stop.set()
        sampler.join()
        counts["memory (300 x 1 MiB heads)"] = 1
        if peak[0] - before > 50:
            record("memory (300 x 1 MiB heads)", "heads", f"RSS {before:.0f} -> {peak[0]:.0f} MB")
        print(f"memory: RSS {before:.1f} MB before 300 unfinished 1 MiB heads, peak {peak[0]:.1f} MB, after {rss():.1f} MB")
        print(f"{'probe class':32} {'probes':>6} {'got through':>12}")
        for kind, n in counts.items():
            print(f"{kind:32} {n:>6} {len(findings.get(kind, [])):>12}")
        for kind, items in findings.items():
            for item in items:
                print(f"  {kind}: {item}")
        return 1 if findings else 0
    finally:
        for p in procs:
            p.kill()
        wsgi.shutdown()


if __name__ == "__main__":
    sys.exit(main())
