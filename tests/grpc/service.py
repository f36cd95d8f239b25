"""A real gRPC service (grpcio) for keygate's black-box tests: the upstream a
sidecar stands in front of. Methods take and return raw bytes (no protobuf
schema is needed for a pass-through test):

  /demo.Echo/Unary    returns JSON {echo, metadata}: the request body and every
                      metadata entry the service received (identity headers).
  /demo.Echo/Stream   server streaming: the body is a count N; streams
                      "message 0" .. "message N-1".
  /demo.Echo/Collect  client streaming: returns the messages received, joined.
  /demo.Echo/Slow     waits the body's milliseconds, then answers "late".
  /demo.Echo/Ticks    server streaming: the body is "INTERVAL_MS,COUNT"; streams
                      "tick 0" .. "tick COUNT-1", one every INTERVAL_MS.

Usage: service.py [--tls CERT KEY]. Prints the port it listens on, then serves.
"""
import json
import sys
import time
from concurrent import futures

import grpc


def unary(request, context):
    metadata = {}
    for key, value in context.invocation_metadata():
        metadata.setdefault(key, []).append(value if isinstance(value, str) else value.decode())
    return json.dumps({"echo": request.decode(), "metadata": metadata}).encode()


def stream(request, context):
    for i in range(int(request.decode() or "1")):
        yield f"message {i}".encode()


def collect(request_iterator, context):
    return b",".join(request_iterator)


def slow(request, context):
    time.sleep(int(request.decode() or "0") / 1000)
    return b"late"


def ticks(request, context):
    interval, count = (int(x) for x in request.decode().split(","))
    for i in range(count):
        if not context.is_active():
            return
        yield f"tick {i}".encode()
        time.sleep(interval / 1000)


def main():
    handlers = {
        "Unary": grpc.unary_unary_rpc_method_handler(unary),
        "Stream": grpc.unary_stream_rpc_method_handler(stream),
        "Collect": grpc.stream_unary_rpc_method_handler(collect),
        "Slow": grpc.unary_unary_rpc_method_handler(slow),
        "Ticks": grpc.unary_stream_rpc_method_handler(ticks),
    }
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=16))
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("demo.Echo", handlers),))
    if len(sys.argv) == 4 and sys.argv[1] == "--tls":
        with open(sys.argv[2], "rb") as c, open(sys.argv[3], "rb") as k:
            creds = grpc.ssl_server_credentials([(k.read(), c.read())])
        port = server.add_secure_port("127.0.0.1:0", creds)
    else:
        port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    print(port, flush=True)
    server.wait_for_termination()


if __name__ == "__main__":
    main()
