"""A webhook receiver that verifies every delivery with the Standard Webhooks reference
library (PyPI `standardwebhooks`), as a customer's receiver would.

Protocol with the test (tests/integration/clients.rs):
- prints `LISTENING <port>` once it accepts connections on 127.0.0.1;
- reads lines `SECRET <whsec_...>` on standard input: each one becomes the newest secret;
- for every POST it verifies the body and headers with the newest secret (a failure is
  answered 400 and reported), checks that the same message with a tampered body, or with a
  secret it was never given, is rejected by the library, and prints
  `RECEIVED <json>` with the webhook-id, the type, the data, and which of the earlier
  secrets also verify it (a rotation's grace period);
- after TS_EXPECT verified messages it prints `ALL OK` and exits.
"""

import base64
import json
import os
import secrets
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

EXPECT = int(os.environ["TS_EXPECT"])
SECRETS = []
LOCK = threading.Lock()
VERIFIED = []
FAILURES = []
DONE = threading.Event()


def rejects(secret, body, headers):
    try:
        Webhook(secret).verify(body, headers)
    except WebhookVerificationError:
        return True
    return False


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        headers = {k: v for k, v in self.headers.items()}
        with LOCK:
            known = list(SECRETS)
        try:
            if not known:
                raise WebhookVerificationError("no secret yet")
            payload = Webhook(known[-1]).verify(body, headers)
            problems = []
            if not rejects(known[-1], body + b" ", headers):
                problems.append("a tampered body verified")
            tampered = bytearray(body)
            tampered[len(tampered) // 2] ^= 1
            if not rejects(known[-1], bytes(tampered), headers):
                problems.append("a flipped byte verified")
            stranger = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
            if not rejects(stranger, body, headers):
                problems.append("another secret verified")
            if self.headers.get("Content-Type") != "application/json":
                problems.append("content-type " + str(self.headers.get("Content-Type")))
            if problems:
                raise WebhookVerificationError("; ".join(problems))
        except WebhookVerificationError as e:
            with LOCK:
                FAILURES.append(str(e))
            print("FAILED " + json.dumps({"id": self.headers.get("webhook-id"), "error": str(e)}), flush=True)
            self.send_response(400)
            self.end_headers()
            return
        also = [i for i, s in enumerate(known[:-1]) if not rejects(s, body, headers)]
        record = {
            "id": self.headers.get("webhook-id"),
            "type": payload.get("type"),
            "timestamp": payload.get("timestamp"),
            "data": payload.get("data"),
            "secret_index": len(known) - 1,
            "also_verified_by": also,
        }
        self.send_response(204)
        self.end_headers()
        with LOCK:
            VERIFIED.append(record)
            count = len(VERIFIED)
        print("RECEIVED " + json.dumps(record), flush=True)
        if count >= EXPECT:
            DONE.set()


def read_secrets():
    for line in sys.stdin:
        line = line.strip()
        if line.startswith("SECRET "):
            with LOCK:
                SECRETS.append(line[len("SECRET "):])
            print("SECRETS " + str(len(SECRETS)), flush=True)


def main():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    threading.Thread(target=read_secrets, daemon=True).start()
    print("LISTENING " + str(server.server_address[1]), flush=True)
    if not DONE.wait(timeout=50):
        print("TIMEOUT after %d verified messages" % len(VERIFIED), flush=True)
        sys.exit(1)
    if FAILURES:
        print("FAILURES " + json.dumps(FAILURES), flush=True)
        sys.exit(1)
    print("ALL OK", flush=True)
    server.shutdown()


if __name__ == "__main__":
    main()
