"""A stand-in OIDC issuer for the workload identity tests, as GitHub Actions, GitLab CI or a
Kubernetes cluster publish theirs: OIDC discovery and a JWKS (an ECDSA P-256 key, `kid`
"k1"), and ID tokens minted on request (a test-only endpoint).

    python3 issuer.py            # prints its base URL, then serves until killed

POST /mint with a JSON object: claims over the defaults (iss: this issuer, iat: now, exp: now
+ 300). Special keys: "_kid" signs with another, unpublished key under that kid; "_hs256"
signs with a shared secret instead.
"""
import http.server
import json
import sys
import time

import jwt
from cryptography.hazmat.primitives.asymmetric import ec

KEY = ec.generate_private_key(ec.SECP256R1())
OTHER = ec.generate_private_key(ec.SECP256R1())
JWK = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(KEY.public_key()))
JWK.update({"kid": "k1", "use": "sig", "alg": "ES256"})


class Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def send(self, body, status=200):
        data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        if self.path == "/.well-known/openid-configuration":
            self.send({"issuer": BASE, "jwks_uri": BASE + "/jwks", "id_token_signing_alg_values_supported": ["ES256"]})
        elif self.path == "/jwks":
            self.send({"keys": [JWK]})
        else:
            self.send({"error": "not found"}, 404)

    def do_POST(self):
        if self.path != "/mint":
            return self.send({"error": "not found"}, 404)
        asked = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        now = int(time.time())
        claims = {"iss": BASE, "iat": now, "exp": now + 300}
        claims.update({k: v for k, v in asked.items() if not k.startswith("_")})
        if asked.get("_hs256"):
            token = jwt.encode(claims, "a shared secret that is long enough", algorithm="HS256")
        elif asked.get("_kid"):
            token = jwt.encode(claims, OTHER, algorithm="ES256", headers={"kid": asked["_kid"]})
        else:
            token = jwt.encode(claims, KEY, algorithm="ES256", headers={"kid": "k1"})
        self.send(token)


server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
BASE = f"http://127.0.0.1:{server.server_address[1]}"
print(BASE, flush=True)
server.serve_forever()
