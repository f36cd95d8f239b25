"""Checks the authorizer's manifests that kubernetes-validate has no schema for:
Istio's AuthorizationPolicy and extension provider (istiod's Helm values), Envoy
Gateway's SecurityPolicy and the Gateway API's ReferenceGrant. Each document must
have the fields its kind requires, and every name it gives must exist: the
provider the policy names, the Service and port the providers call, the
authorizer's port in keygate's own config. Exits 1 listing every problem."""

import pathlib
import sys

import yaml

root = pathlib.Path(sys.argv[1])
problems = []
docs = []
for path in sorted(root.glob("*.yaml")):
    for doc in yaml.safe_load_all(path.read_text()):
        if doc is not None:
            docs.append((path.name, doc))


def need(where, doc, *keys):
    node = doc
    for k in keys:
        if not isinstance(node, dict) or k not in node:
            problems.append(f"{where}: no {'.'.join(keys)}")
            return None
        node = node[k]
    return node


services = {}
authorizer_port = None
for name, doc in docs:
    kind = doc.get("kind")
    if kind == "Service":
        ports = {p["port"] for p in doc["spec"]["ports"]}
        services[(doc["metadata"]["name"], doc["metadata"].get("namespace", "default"))] = ports
    if kind == "ConfigMap" and "keygate.yaml" in doc.get("data", {}):
        config = yaml.safe_load(doc["data"]["keygate.yaml"])
        listen = (config.get("authorizer") or {}).get("listen")
        if listen:
            authorizer_port = int(listen.rsplit(":", 1)[1])

providers = set()
for name, doc in docs:
    kind = doc.get("kind")
    where = f"{name} {kind or 'values'}"
    if kind is None:
        for p in need(where, doc, "meshConfig", "extensionProviders") or []:
            grpc = p.get("envoyExtAuthzGrpc")
            if grpc is None:
                problems.append(f"{where}: provider {p.get('name')} is not envoyExtAuthzGrpc")
                continue
            providers.add(p.get("name"))
            host = grpc.get("service", "").split(".")
            key = (host[0], host[1] if len(host) > 1 else "default")
            if grpc.get("port") not in services.get(key, set()):
                problems.append(f"{where}: {grpc.get('service')}:{grpc.get('port')} is no Service port here")
            if grpc.get("port") != authorizer_port:
                problems.append(f"{where}: port {grpc.get('port')} is not authorizer.listen's {authorizer_port}")
        continue
    for field in ("apiVersion", "kind"):
        need(where, doc, field)
    need(where, doc, "metadata", "name")
    if kind == "AuthorizationPolicy":
        if doc["apiVersion"] not in ("security.istio.io/v1", "security.istio.io/v1beta1"):
            problems.append(f"{where}: apiVersion {doc['apiVersion']}")
        if need(where, doc, "spec", "action") != "CUSTOM":
            problems.append(f"{where}: action is not CUSTOM")
        need(where, doc, "spec", "provider", "name")
    elif kind == "SecurityPolicy":
        need(where, doc, "spec", "targetRefs")
        for ref in need(where, doc, "spec", "extAuth", "grpc", "backendRefs") or []:
            key = (ref.get("name"), ref.get("namespace", doc["metadata"].get("namespace")))
            if ref.get("port") not in services.get(key, set()):
                problems.append(f"{where}: backendRef {key}:{ref.get('port')} is no Service port here")
    elif kind == "ReferenceGrant":
        need(where, doc, "spec", "from")
        need(where, doc, "spec", "to")

for name, doc in docs:
    if doc.get("kind") == "AuthorizationPolicy":
        wanted = doc["spec"]["provider"]["name"]
        if wanted not in providers:
            problems.append(f"{name}: provider {wanted} is not among the extension providers {sorted(providers)}")

if problems:
    print("custom resources:", *problems, sep="\n  - ")
    sys.exit(1)
print(f"custom resources: {len(docs)} documents under {root} are consistent")
