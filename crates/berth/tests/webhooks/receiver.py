#!/usr/bin/env python3
"""A webhook receiver for Berth's tests: records every POST it gets, as a JSON line in
DIR/received.jsonl (written and fsynced before it answers), and checks what it can itself:

- the HMAC-SHA256 signature (`X-Berth-Signature-256`) with the secret DIR/secrets.json names
  for the path's last segment, computed here with Python's hmac module;
- CloudEvents requests, parsed and validated by the CloudEvents Python SDK (structured mode,
  `from_structured_event`), whose attributes it records.

It answers the status DIR/status.json names for the path's last segment (default 200).

    receiver.py PORT DIR
"""
import hashlib
import hmac
import json
import os
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PORT = int(sys.argv[1])
DIR = sys.argv[2]


def load(name):
    try:
        with open(os.path.join(DIR, name)) as f:
            return json.load(f)
    except FileNotFoundError:
        return {}


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_POST(self):
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n)
        key = self.path.rstrip("/").rsplit("/", 1)[-1]
        rec = {
            "path": self.path,
            "headers": {k.lower(): v for k, v in self.headers.items()},
            "body": body.decode("utf-8", "replace"),
        }
        secret = load("secrets.json").get(key)
        sig = self.headers.get("X-Berth-Signature-256")
        if secret is not None:
            want = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
            rec["hmac_ok"] = sig is not None and hmac.compare_digest(want, sig)
        if (self.headers.get("Content-Type") or "").startswith("application/cloudevents+json"):
            try:
                from cloudevents.core.bindings.http import HTTPMessage, from_structured_event

                msg = HTTPMessage(headers={k.lower(): v for k, v in self.headers.items()}, body=body)
                ev = from_structured_event(msg)
                attrs = {k: str(v) for k, v in ev.get_attributes().items()}
                rec["cloudevent"] = {"attributes": attrs, "data": ev.get_data()}
            except Exception as e:  # recorded, so the test shows why
                rec["cloudevent_error"] = repr(e)
        with open(os.path.join(DIR, "received.jsonl"), "a") as f:
            f.write(json.dumps(rec) + "\n")
            f.flush()
            os.fsync(f.fileno())
        status = int(load("status.json").get(key, 200))
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.end_headers()
        self.wfile.write(b"ok" if status < 300 else b"not now")


ThreadingHTTPServer.allow_reuse_address = True
server = ThreadingHTTPServer(("127.0.0.1", PORT), Handler)
print("ready", flush=True)
server.serve_forever()
