"""A real gRPC client (grpcio) for keygate's black-box tests. Runs the calls given
as JSON on stdin against a target and prints one JSON result per call.

Usage: client.py TARGET [--tls CA_PEM]
stdin: [{"method": "Unary" | "Stream" | "Ticks" | "Collect" | "Slow", "body": "...",
         "messages": [...], "metadata": [["x-api-key", "..."], ...],
         "path": "/other.Service/Method" (a unary call to another path)}, ...]
stdout: [{"code": "OK", "code_value": 0, "details": ..., "initial": {...},
          "trailing": {...}, "response": "..." | [...]}, ...]
A "Ticks" call also gives "times" (Unix seconds each message arrived) and
"ended" (when the call ended).
"""
import json
import sys
import time

import grpc


def metadata_dict(md):
    out = {}
    for key, value in md or ():
        out.setdefault(key, []).append(value if isinstance(value, str) else value.decode())
    return out


def run(channel, call):
    method = call["method"]
    md = [tuple(kv) for kv in call.get("metadata", [])]
    body = call.get("body", "").encode()
    result = {"method": method}
    try:
        if method == "Stream":
            responses = channel.unary_stream("/demo.Echo/Stream")(body, metadata=md, timeout=30)
            result["response"] = [m.decode() for m in responses]
            state = responses
        elif method == "Ticks":
            responses = channel.unary_stream("/demo.Echo/Ticks")(body, metadata=md, timeout=60)
            state = responses
            result["response"], result["times"] = [], []
            for m in responses:
                result["response"].append(m.decode())
                result["times"].append(time.time())
        elif method == "Collect":
            messages = iter([m.encode() for m in call.get("messages", [])])
            response, state = channel.stream_unary("/demo.Echo/Collect").with_call(
                messages, metadata=md, timeout=30
            )
            result["response"] = response.decode()
        else:
            path = call.get("path", f"/demo.Echo/{method}")
            response, state = channel.unary_unary(path).with_call(
                body, metadata=md, timeout=30
            )
            result["response"] = response.decode()
    except grpc.RpcError as e:
        state = e
    result["ended"] = time.time()
    result["code"] = state.code().name
    result["code_value"] = state.code().value[0]
    result["details"] = state.details()
    result["initial"] = metadata_dict(state.initial_metadata())
    result["trailing"] = metadata_dict(state.trailing_metadata())
    return result


def main():
    target = sys.argv[1]
    calls = json.load(sys.stdin)
    if len(sys.argv) == 4 and sys.argv[2] == "--tls":
        with open(sys.argv[3], "rb") as f:
            creds = grpc.ssl_channel_credentials(root_certificates=f.read())
        channel = grpc.secure_channel(target, creds)
    else:
        channel = grpc.insecure_channel(target)
    with channel:
        print(json.dumps([run(channel, c) for c in calls]))


if __name__ == "__main__":
    main()
