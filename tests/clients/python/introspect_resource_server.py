"""A resource server protected by authlib's RFC 7662 support, asking token-service.

Requests to it carry `Authorization: Bearer <token>`; authlib's `ResourceProtector` with an
`IntrospectTokenValidator` checks each token by calling token-service's introspection endpoint
through authlib's own RFC 7662 client (`OAuth2Session.introspect_token`, client credentials
sent with HTTP Basic, `client_secret_basic`). So both sides of the exchange are authlib's
reading of the RFC, not ours.

    GET /resource  any active token: 200 {"sub", "username", "scope", "token_type"}
    GET /admin     also needs the scope "system_admin" (token-service's roles): else 403
    anything the validator refuses: authlib's error status (401 invalid_token), body and
    WWW-Authenticate; if token-service refuses the resource server itself, 503.

Environment: TS_INTROSPECT_URL, TS_CLIENT_ID, TS_CLIENT_SECRET. Prints `LISTENING <port>`
once it serves on 127.0.0.1, then serves until killed.
"""

import json
import os
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

# The test server speaks plain HTTP on 127.0.0.1; authlib refuses that unless told.
os.environ["AUTHLIB_INSECURE_TRANSPORT"] = "1"

from authlib.integrations.requests_client import OAuth2Session  # noqa: E402
from authlib.oauth2 import OAuth2Error, ResourceProtector  # noqa: E402
from authlib.oauth2.rfc7662 import IntrospectTokenValidator  # noqa: E402

INTROSPECT_URL = os.environ["TS_INTROSPECT_URL"]
CLIENT_ID = os.environ["TS_CLIENT_ID"]
CLIENT_SECRET = os.environ["TS_CLIENT_SECRET"]


class IntrospectionRefused(Exception):
    """token-service did not accept the resource server's own credentials."""


class TokenServiceValidator(IntrospectTokenValidator):
    def introspect_token(self, token_string):
        session = OAuth2Session(
            CLIENT_ID,
            CLIENT_SECRET,
            token_endpoint_auth_method="client_secret_basic",
        )
        resp = session.introspect_token(
            INTROSPECT_URL, token=token_string, token_type_hint="access_token"
        )
        if resp.status_code != 200:
            raise IntrospectionRefused(f"{resp.status_code} {resp.text}")
        return resp.json()


require_oauth = ResourceProtector()
require_oauth.register_token_validator(TokenServiceValidator(realm="resource"))


class Request:
    """What ResourceProtector reads of a request."""

    def __init__(self, headers):
        self.headers = headers


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def answer(self, status, body, headers=()):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in headers:
            if name.lower() != "content-type":
                self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        scopes = {"/resource": None, "/admin": ["system_admin"]}
        if self.path not in scopes:
            self.answer(404, {"error": "not_found"})
            return
        try:
            token = require_oauth.validate_request(scopes[self.path], Request(self.headers))
        except OAuth2Error as error:
            self.answer(error.status_code, dict(error.get_body()), error.get_headers())
            return
        except IntrospectionRefused as refused:
            self.answer(503, {"error": "introspection_refused", "detail": str(refused)})
            return
        self.answer(
            200,
            {key: token.get(key) for key in ("sub", "username", "scope", "token_type")},
        )


def main():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    print(f"LISTENING {server.server_address[1]}", flush=True)
    # Serve until the test kills us (or closes stdin).
    sys.stdin.read()
    server.shutdown()


if __name__ == "__main__":
    main()
