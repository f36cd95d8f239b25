#!/usr/bin/env python3
"""Independent JWT implementation for keygate's tests (PyJWT + cryptography).

  mint.py keys DIR        generate RSA, P-256, P-384, Ed25519 key pairs and an HMAC
                          secret into DIR, with public PEMs and a JWKS (jwks.json)
  mint.py mint DIR < SPEC print {name: token} for a JSON list of
                          {name, alg, key, kid?, claims, special?} where special is
                          "none" (alg none), "hs_with_public_pem" (HS256 keyed with the
                          RSA public key PEM: the alg-confusion attack) or "tamper"
                          (payload changed after signing) or "hs_unchecked" (HS256
                          signed by hand with the HMAC secret, for claims PyJWT refuses
                          to encode, such as a numeric iss)
"""
import base64, hashlib, hmac, json, os, sys

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

KEYS = {
    "rsa": ("RS256", lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048)),
    "rsa2": ("RS256", lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048)),
    "ec256": ("ES256", lambda: ec.generate_private_key(ec.SECP256R1())),
    "ec384": ("ES384", lambda: ec.generate_private_key(ec.SECP384R1())),
    "ed": ("EdDSA", lambda: ed25519.Ed25519PrivateKey.generate()),
}


def b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def generate(d):
    os.makedirs(d, exist_ok=True)
    jwks = []
    for name, (alg, make) in KEYS.items():
        key = make()
        with open(os.path.join(d, f"{name}.key.pem"), "wb") as f:
            f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption()))
        pub = key.public_key()
        with open(os.path.join(d, f"{name}.pub.pem"), "wb") as f:
            f.write(pub.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
        algo = jwt.get_algorithm_by_name(alg)
        jwk = json.loads(algo.to_jwk(pub))
        jwk.update({"kid": f"{name}-1", "use": "sig"})
        if name != "rsa":  # the RSA key is published without "alg": keygate infers the family
            jwk["alg"] = alg
        jwks.append(jwk)
    with open(os.path.join(d, "jwks.json"), "w") as f:
        json.dump({"keys": jwks}, f)
    with open(os.path.join(d, "hs.secret"), "w") as f:
        f.write("test-secret-" + b64(os.urandom(24)))


def private_key(d, name):
    if name == "hs":
        return open(os.path.join(d, "hs.secret")).read()
    return open(os.path.join(d, f"{name}.key.pem"), "rb").read()


def mint(d, spec):
    out = {}
    for t in spec:
        claims, alg, special = t.get("claims", {}), t.get("alg"), t.get("special")
        headers = {"kid": t["kid"]} if t.get("kid") else {}
        if special == "none":
            header = {"alg": "none", "typ": "JWT", **headers}
            token = b64(json.dumps(header).encode()) + "." + b64(json.dumps(claims).encode()) + "."
        elif special == "hs_unchecked":
            secret = open(os.path.join(d, "hs.secret")).read().encode()
            header = {"alg": "HS256", "typ": "JWT", **headers}
            signing_input = b64(json.dumps(header).encode()) + "." + b64(json.dumps(claims).encode())
            sig = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
            token = signing_input + "." + b64(sig)
        elif special == "hs_with_public_pem":
            pem = open(os.path.join(d, "rsa.pub.pem"), "rb").read()
            header = {"alg": "HS256", "typ": "JWT", **headers}
            signing_input = b64(json.dumps(header).encode()) + "." + b64(json.dumps(claims).encode())
            sig = hmac.new(pem, signing_input.encode(), hashlib.sha256).digest()
            token = signing_input + "." + b64(sig)
        else:
            token = jwt.encode(claims, private_key(d, t["key"]), algorithm=alg, headers=headers or None)
            if special == "tamper":
                h, p, s = token.split(".")
                changed = dict(claims, scope="admin")
                token = h + "." + b64(json.dumps(changed).encode()) + "." + s
        out[t["name"]] = token
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    if sys.argv[1] == "keys":
        generate(sys.argv[2])
    elif sys.argv[1] == "mint":
        mint(sys.argv[2], json.load(sys.stdin))
    else:
        sys.exit("usage: mint.py keys DIR | mint DIR < spec.json")
