#!/usr/bin/env python3
"""push_emulator.py — a Web Push service on loopback, for the tests.

Holds one device's keys (a P-256 pair and a 16-byte auth secret, made at
start and written to --keys as JSON {"p256dh", "auth", "private"}; with
--keys-from it reuses a pair another process made: the browser test
registers a subscription whose keys it holds).  Serves HTTPS on
127.0.0.1:--port with --cert/--key and, for every POST:

  - checks RFC 8292 VAPID: "Authorization: vapid t=JWT, k=KEY", an ES256
    signature by KEY over the JWT, aud == this origin, exp in the future
    and at most 24 h ahead;
  - decrypts the RFC 8291 aes128gcm body with the device's keys;
  - appends one JSON line to --log: {path, ttl, urgency, topic,
    content_encoding, vapid_ok, vapid_error, k, aud, exp, payload (the
    decrypted text, or null), decrypt_error};
  - answers 410 for paths under /gone/, 404 under /missing/, else 201
    (the answer does not depend on the checks: the test reads the log).
"""
import argparse
import base64
import json
import os
import ssl
import sys
import time
from http.server import BaseHTTPRequestHandler, HTTPServer

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, hmac, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import \
    encode_dss_signature
from cryptography.hazmat.primitives.ciphers.aead import AESGCM


def b64d(s):
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def b64e(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def hmac256(key, msg):
    h = hmac.HMAC(key, hashes.SHA256())
    h.update(msg)
    return h.finalize()


def point(key):
    return key.public_key().public_bytes(
        serialization.Encoding.X962,
        serialization.PublicFormat.UncompressedPoint)


def decrypt(body, priv, auth):
    """RFC 8291 / RFC 8188, one record: the plaintext bytes."""
    salt, rs, idlen = body[:16], int.from_bytes(body[16:20], "big"), body[20]
    as_pub = body[21:21 + idlen]
    ct = body[21 + idlen:]
    if idlen != 65 or rs < 18 or len(ct) > rs:
        raise ValueError("bad header (idlen %d, rs %d)" % (idlen, rs))
    ua_pub = point(priv)
    peer = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(),
                                                        as_pub)
    ecdh = priv.exchange(ec.ECDH(), peer)
    prk_key = hmac256(auth, ecdh)
    ikm = hmac256(prk_key, b"WebPush: info\x00" + ua_pub + as_pub + b"\x01")
    prk = hmac256(salt, ikm)
    cek = hmac256(prk, b"Content-Encoding: aes128gcm\x00\x01")[:16]
    nonce = hmac256(prk, b"Content-Encoding: nonce\x00\x01")[:12]
    plain = AESGCM(cek).decrypt(nonce, ct, b"")
    plain = plain.rstrip(b"\x00")
    if not plain.endswith(b"\x02"):
        raise ValueError("no last-record delimiter")
    return plain[:-1]


def check_vapid(header, origin):
    """(ok, error, claims, k)"""
    if not header or not header.startswith("vapid "):
        return False, "no vapid authorization", {}, None
    parts = dict(p.strip().split("=", 1) for p in header[6:].split(","))
    t, k = parts.get("t"), parts.get("k")
    if not t or not k:
        return False, "t= or k= missing", {}, k
    h64, c64, s64 = t.split(".")
    head = json.loads(b64d(h64))
    claims = json.loads(b64d(c64))
    if head.get("alg") != "ES256":
        return False, "alg %r" % head.get("alg"), claims, k
    pub = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(),
                                                       b64d(k))
    sig = b64d(s64)
    if len(sig) != 64:
        return False, "signature of %d bytes" % len(sig), claims, k
    der = encode_dss_signature(int.from_bytes(sig[:32], "big"),
                               int.from_bytes(sig[32:], "big"))
    try:
        pub.verify(der, (h64 + "." + c64).encode(),
                   ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        return False, "bad signature", claims, k
    now = time.time()
    if claims.get("aud") != origin:
        return False, "aud %r, not %r" % (claims.get("aud"), origin), \
            claims, k
    exp = claims.get("exp", 0)
    if not (now < exp <= now + 24 * 3600):
        return False, "exp %r out of range" % exp, claims, k
    return True, None, claims, k


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--cert", required=True)
    ap.add_argument("--key", required=True)
    ap.add_argument("--keys", required=True)
    ap.add_argument("--keys-from")
    ap.add_argument("--log", required=True)
    a = ap.parse_args()

    if a.keys_from:
        with open(a.keys_from) as f:
            k = json.load(f)
        priv = serialization.load_pem_private_key(k["private"].encode(),
                                                  None)
        auth = b64d(k["auth"])
    else:
        priv = ec.generate_private_key(ec.SECP256R1())
        auth = os.urandom(16)
    pem = priv.private_bytes(serialization.Encoding.PEM,
                             serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()
    with open(a.keys + ".tmp", "w") as f:
        json.dump({"p256dh": b64e(point(priv)), "auth": b64e(auth),
                   "private": pem}, f)
    os.rename(a.keys + ".tmp", a.keys)
    origin = "https://127.0.0.1:%d" % a.port

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def do_POST(self):
            n = int(self.headers.get("Content-Length", "0"))
            body = self.rfile.read(n)
            ok, verr, claims, k = check_vapid(
                self.headers.get("Authorization"), origin)
            rec = {"path": self.path, "ttl": self.headers.get("TTL"),
                   "urgency": self.headers.get("Urgency"),
                   "topic": self.headers.get("Topic"),
                   "content_encoding":
                       self.headers.get("Content-Encoding"),
                   "vapid_ok": ok, "vapid_error": verr, "k": k,
                   "aud": claims.get("aud"), "exp": claims.get("exp"),
                   "payload": None, "decrypt_error": None}
            try:
                rec["payload"] = decrypt(body, priv, auth).decode()
            except Exception as e:     # noqa: BLE001 — logged for the test
                rec["decrypt_error"] = "%s: %s" % (type(e).__name__, e)
            with open(a.log, "a") as f:
                f.write(json.dumps(rec) + "\n")
            code = 410 if self.path.startswith("/gone/") else \
                404 if self.path.startswith("/missing/") else 201
            self.send_response(code)
            self.send_header("Content-Length", "0")
            self.end_headers()

    srv = HTTPServer(("127.0.0.1", a.port), Handler)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(a.cert, a.key)
    srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    print("push emulator on %s" % origin, flush=True)
    srv.serve_forever()


if __name__ == "__main__":
    sys.exit(main())
