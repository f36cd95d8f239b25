"""An Envoy ext_authz client for the authorizer tests, built from Envoy's official
proto definitions (the envoy-data-plane package) and grpcio: reads a JSON job on
stdin, asks each Check over one channel, prints each answer as JSON on stdout.

Job: {"target": "127.0.0.1:PORT", "health": bool,
      "checks": [{"method", "path", "host", "headers": {...}, "source": "IP",
                  "until_denied": seconds}]}
A check with "until_denied" is asked again and again (every 10 ms) until it is
denied or the seconds pass; its answer then carries "waited" (seconds).
"""

import json
import sys
import time

import grpc
from envoy_data_plane.envoy.config.core.v3 import Address, SocketAddress
from envoy_data_plane.envoy.service.auth.v3 import (
    AttributeContext,
    AttributeContextHttpRequest,
    AttributeContextPeer,
    AttributeContextRequest,
    AuthorizationSyncStub,
    CheckRequest,
)
from grpc_health.v1 import health_pb2, health_pb2_grpc


def options(opts):
    return [
        {
            "key": o.header.key,
            "value": o.header.value,
            "append_action": int(o.append_action),
        }
        for o in opts
    ]


def answer(resp):
    out = {"code": resp.status.code if resp.status else 0,
           "message": resp.status.message if resp.status else ""}
    if resp.is_set("ok_response") and resp.ok_response is not None:
        ok = resp.ok_response
        out["ok"] = {
            "headers": options(ok.headers),
            "headers_to_remove": list(ok.headers_to_remove),
            "response_headers_to_add": options(ok.response_headers_to_add),
            "query_parameters_to_remove": list(ok.query_parameters_to_remove),
        }
    if resp.is_set("denied_response") and resp.denied_response is not None:
        d = resp.denied_response
        out["denied"] = {
            "status": int(d.status.code),
            "headers": options(d.headers),
            "body": d.body,
        }
    return out


def main():
    job = json.load(sys.stdin)
    channel = grpc.insecure_channel(job["target"])
    results = {"checks": []}
    if job.get("health"):
        health = health_pb2_grpc.HealthStub(channel)
        status = health.Check(health_pb2.HealthCheckRequest(service=""), timeout=10).status
        results["health"] = health_pb2.HealthCheckResponse.ServingStatus.Name(status)
    stub = AuthorizationSyncStub(channel)
    for check in job["checks"]:
        request = CheckRequest(
            attributes=AttributeContext(
                source=AttributeContextPeer(
                    address=Address(
                        socket_address=SocketAddress(
                            address=check.get("source", "203.0.113.5"), port_value=40000
                        )
                    )
                ),
                request=AttributeContextRequest(
                    http=AttributeContextHttpRequest(
                        id=check.get("id", ""),
                        method=check.get("method", "GET"),
                        path=check["path"],
                        host=check.get("host", "api.example.com"),
                        scheme="http",
                        protocol=check.get("protocol", "HTTP/1.1"),
                        headers=check.get("headers", {}),
                    )
                ),
            )
        )
        try:
            started = time.monotonic()
            got = answer(stub.check(request))
            limit = check.get("until_denied")
            while limit is not None and got["code"] == 0 and time.monotonic() - started < limit:
                time.sleep(0.01)
                got = answer(stub.check(request))
            if limit is not None:
                got["waited"] = time.monotonic() - started
            results["checks"].append(got)
        except grpc.RpcError as e:
            results["checks"].append({"rpc_error": e.code().value[0], "details": e.details()})
    json.dump(results, sys.stdout)


main()
