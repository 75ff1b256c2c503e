#!/usr/bin/env python3
"""Signs images the way cosign and notation do, for Berth's signature tests (neither tool is
installable here). Written from the published formats with Python's `cryptography`:

- cosign simple signing: the payload JSON cosign writes, byte for byte, signed with ECDSA
  P-256 over SHA-256 (DER, base64) — what goes in `dev.cosignproject.cosign/signature`.
- Notation: the JWS envelope (flattened JSON serialization, ES256 raw R||S or PS256) and the
  COSE_Sign1 envelope (tag 18; Sig_structure "Signature1"), with the x5c/x5chain certificate
  chain, payload `{"targetArtifact": {...}}`, signing scheme notary.x509.

    sign.py keys DIR
    sign.py cosign KEY DIGEST REFERENCE OUT_PAYLOAD OUT_SIGNATURE
    sign.py notation jws|cose KEY CHAIN_PEMS DIGEST SIZE MEDIA_TYPE OUT [EXPIRY_UNIX]
"""
import base64
import datetime
import json
import struct
import sys

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


def write(path, data):
    with open(path, "wb") as f:
        f.write(data)


def pem_key(k):
    return k.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())


def name(cn, org="Berth Test"):
    return x509.Name([
        x509.NameAttribute(NameOID.COUNTRY_NAME, "US"),
        x509.NameAttribute(NameOID.STATE_OR_PROVINCE_NAME, "WA"),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, org),
        x509.NameAttribute(NameOID.COMMON_NAME, cn),
    ])


def cert(subject, key, issuer, issuer_key, ca):
    now = datetime.datetime.now(datetime.timezone.utc)
    b = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer).public_key(key.public_key())
         .serial_number(x509.random_serial_number())
         .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=365))
         .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if ca:
        b = b.add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
    else:
        b = b.add_extension(x509.KeyUsage(True, False, False, False, False, False, False, False, False), critical=True)
        b = b.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CODE_SIGNING]), critical=False)
    return b.sign(issuer_key, hashes.SHA256())


def keys(d):
    for n in ["cosign", "other"]:
        k = ec.generate_private_key(ec.SECP256R1())
        write(f"{d}/{n}.key", pem_key(k))
        write(f"{d}/{n}.pub", k.public_key().public_bytes(serialization.Encoding.PEM,
                                                          serialization.PublicFormat.SubjectPublicKeyInfo))
    for ca_name in ["ca", "rogue"]:
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca = cert(name(f"{ca_name} root"), ca_key, name(f"{ca_name} root"), ca_key, True)
        write(f"{d}/{ca_name}.key", pem_key(ca_key))
        write(f"{d}/{ca_name}.pem", ca.public_bytes(serialization.Encoding.PEM))
        for kind, k in [("ec", ec.generate_private_key(ec.SECP256R1())),
                        ("rsa", rsa.generate_private_key(public_exponent=65537, key_size=2048))]:
            leaf = cert(name("builder"), k, ca.subject, ca_key, False)
            write(f"{d}/{ca_name}-leaf-{kind}.key", pem_key(k))
            write(f"{d}/{ca_name}-leaf-{kind}.pem", leaf.public_bytes(serialization.Encoding.PEM))


def load_key(path):
    return serialization.load_pem_private_key(open(path, "rb").read(), None)


def cosign(key, digest, reference, out_payload, out_sig):
    payload = json.dumps({"critical": {"identity": {"docker-reference": reference},
                                       "image": {"docker-manifest-digest": digest},
                                       "type": "cosign container image signature"},
                          "optional": None}, separators=(",", ":")).encode()
    sig = load_key(key).sign(payload, ec.ECDSA(hashes.SHA256()))
    write(out_payload, payload)
    write(out_sig, base64.b64encode(sig))


def b64url(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def sign_raw(key, data):
    """ES256: raw R||S; PS256: RSASSA-PSS, salt as long as the hash. Returns (alg, signature)."""
    if isinstance(key, ec.EllipticCurvePrivateKey):
        r, s = decode_dss_signature(key.sign(data, ec.ECDSA(hashes.SHA256())))
        return "ES256", r.to_bytes(32, "big") + s.to_bytes(32, "big")
    sig = key.sign(data, padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=padding.PSS.DIGEST_LENGTH),
                   hashes.SHA256())
    return "PS256", sig


def cbor(v):
    """A minimal CBOR encoder: ints, bytes, text, lists, dicts, and Tag(n, v)."""
    def head(major, n):
        if n < 24:
            return bytes([major << 5 | n])
        for add, fmt in [(24, ">B"), (25, ">H"), (26, ">I"), (27, ">Q")]:
            if n < 1 << (8 * struct.calcsize(fmt)):
                return bytes([major << 5 | add]) + struct.pack(fmt, n)
    if isinstance(v, Tag):
        return head(6, v.n) + cbor(v.v)
    if isinstance(v, bool):
        raise ValueError("no booleans here")
    if isinstance(v, int):
        return head(0, v) if v >= 0 else head(1, -1 - v)
    if isinstance(v, bytes):
        return head(2, len(v)) + v
    if isinstance(v, str):
        b = v.encode()
        return head(3, len(b)) + b
    if isinstance(v, list):
        return head(4, len(v)) + b"".join(cbor(x) for x in v)
    if isinstance(v, dict):
        return head(5, len(v)) + b"".join(cbor(k) + cbor(x) for k, x in v.items())
    raise ValueError(f"cannot encode {v!r}")


class Tag:
    def __init__(self, n, v):
        self.n, self.v = n, v


def notation(fmt, key, chain, digest, size, media_type, out, expiry=None):
    k = load_key(key)
    certs = [x509.load_pem_x509_certificate(open(p, "rb").read()).public_bytes(serialization.Encoding.DER)
             for p in chain.split(",")]
    payload = json.dumps({"targetArtifact": {"digest": digest, "mediaType": media_type, "size": int(size)}},
                         separators=(",", ":")).encode()
    now = int(datetime.datetime.now(datetime.timezone.utc).timestamp())
    alg = "ES256" if isinstance(k, ec.EllipticCurvePrivateKey) else "PS256"
    if fmt == "jws":
        protected = {"alg": alg, "crit": ["io.cncf.notary.signingScheme"] + (["io.cncf.notary.expiry"] if expiry else []),
                     "cty": "application/vnd.cncf.notary.payload.v1+json",
                     "io.cncf.notary.signingScheme": "notary.x509",
                     "io.cncf.notary.signingTime": datetime.datetime.fromtimestamp(now, datetime.timezone.utc).isoformat()}
        if expiry:
            protected["io.cncf.notary.expiry"] = datetime.datetime.fromtimestamp(int(expiry), datetime.timezone.utc).isoformat()
        p64, b64 = b64url(json.dumps(protected, separators=(",", ":")).encode()), b64url(payload)
        _, sig = sign_raw(k, f"{p64}.{b64}".encode())
        env = {"payload": b64, "protected": p64,
               "header": {"x5c": [base64.b64encode(c).decode() for c in certs], "io.cncf.notary.signingAgent": "berth-test"},
               "signature": b64url(sig)}
        write(out, json.dumps(env).encode())
    else:
        protected = {1: -7 if alg == "ES256" else -37,
                     2: ["io.cncf.notary.signingScheme"] + (["io.cncf.notary.expiry"] if expiry else []),
                     3: "application/vnd.cncf.notary.payload.v1+json",
                     "io.cncf.notary.signingScheme": "notary.x509",
                     "io.cncf.notary.signingTime": Tag(1, now)}
        if expiry:
            protected["io.cncf.notary.expiry"] = Tag(1, int(expiry))
        p = cbor(protected)
        _, sig = sign_raw(k, cbor(["Signature1", p, b"", payload]))
        write(out, cbor(Tag(18, [p, {33: certs, "io.cncf.notary.signingAgent": "berth-test"}, payload, sig])))


if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    {"keys": keys, "cosign": cosign, "notation": notation}[cmd](*args)
