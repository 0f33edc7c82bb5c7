"""Calls token-service's envoy.service.auth.v3.Authorization/Check as Envoy would, with the
messages and stub of the PyPI package xds-protos (generated from Envoy's own protos), and
checks the answers: an allowed request's identity headers, a denied one's 401 and 403 with
Mattermost's JSON body, and a gateway that may not ask.

Environment: TS_GRPC (host:port), TS_GATEWAY_TOKEN (a user with system_token_introspector),
TS_PAT and TS_PAT_ID (a personal access token of TS_USER_ID's, and its id), TS_USER_ID,
TS_USERNAME. Exits non-zero on the first failure; prints "ALL OK" at the end.
"""

import json
import os
import sys

import grpc
from envoy.config.core.v3 import base_pb2
from envoy.service.auth.v3 import attribute_context_pb2, external_auth_pb2, external_auth_pb2_grpc
from envoy.type.v3 import http_status_pb2
from google.rpc import code_pb2

IDENTITY = {
    "x-auth-user-id", "x-auth-username", "x-auth-roles", "x-auth-token-type",
    "x-auth-token-id", "x-auth-session-id",
}


def fail(message):
    sys.exit(f"FAILED: {message}")


def check_request(method="GET", path="/", headers=None, raw_headers=None, extensions=None):
    http = attribute_context_pb2.AttributeContext.HttpRequest(
        id="py-request-1", method=method, path=path, host="app.internal", scheme="https",
        protocol="HTTP/1.1", headers=headers or {},
    )
    if raw_headers:
        # Envoy's encode_raw_headers: the header_map with raw bytes instead of the map.
        http.header_map.CopyFrom(base_pb2.HeaderMap(headers=[
            base_pb2.HeaderValue(key=k, raw_value=v.encode()) for k, v in raw_headers
        ]))
    return external_auth_pb2.CheckRequest(attributes=attribute_context_pb2.AttributeContext(
        request=attribute_context_pb2.AttributeContext.Request(http=http),
        context_extensions=extensions or {},
    ))


def main():
    channel = grpc.insecure_channel(os.environ["TS_GRPC"])
    stub = external_auth_pb2_grpc.AuthorizationStub(channel)
    gateway = [("authorization", f"Bearer {os.environ['TS_GATEWAY_TOKEN']}")]
    pat, pat_id = os.environ["TS_PAT"], os.environ["TS_PAT_ID"]
    user_id, username = os.environ["TS_USER_ID"], os.environ["TS_USERNAME"]

    # Allowed: the identity, every header overwriting a client-sent copy.
    answer = stub.Check(check_request(headers={
        "authorization": f"Bearer {pat}", "x-auth-user-id": "forged",
    }), metadata=gateway)
    if answer.status.code != code_pb2.OK or answer.WhichOneof("http_response") != "ok_response":
        fail(f"a valid token was not allowed: {answer}")
    ok = answer.ok_response
    overwrite = base_pb2.HeaderValueOption.HeaderAppendAction.OVERWRITE_IF_EXISTS_OR_ADD
    headers = {}
    for option in ok.headers:
        if option.append_action != overwrite:
            fail(f"{option.header.key} does not overwrite: {option}")
        headers[option.header.key] = option.header.value
    expected = {
        "x-auth-user-id": user_id, "x-auth-username": username,
        "x-auth-token-type": "user_access_token", "x-auth-token-id": pat_id,
    }
    for key, value in expected.items():
        if headers.get(key) != value:
            fail(f"{key} is {headers.get(key)!r}, expected {value!r}")
    if set(headers) != IDENTITY or list(ok.headers_to_remove):
        fail(f"identity headers {sorted(headers)}, removed {list(ok.headers_to_remove)}")

    # The cookie, as Envoy sends raw headers; a read needs no CSRF evidence.
    answer = stub.Check(check_request(raw_headers=[("cookie", f"a=b; MMAUTHTOKEN={pat}")]),
                        metadata=gateway)
    if answer.WhichOneof("http_response") != "ok_response":
        fail(f"the MMAUTHTOKEN cookie in header_map was not read: {answer}")

    # Denied: 401 with Mattermost's body, whatever is wrong with the token.
    for headers in ({"authorization": "Bearer " + "x" * 26}, {}):
        answer = stub.Check(check_request(headers=headers), metadata=gateway)
        denied = answer.denied_response
        if (answer.status.code != code_pb2.UNAUTHENTICATED
                or denied.status.code != http_status_pb2.StatusCode.Unauthorized):
            fail(f"expected a 401 for {headers}: {answer}")
        body = json.loads(denied.body)
        if body != {"id": "api.context.session_expired.app_error",
                    "message": "Invalid or expired session, please login again.",
                    "detailed_error": "", "request_id": "py-request-1", "status_code": 401}:
            fail(f"401 body {denied.body}")
        if ("content-type", "application/json") not in [
                (h.header.key, h.header.value) for h in denied.headers]:
            fail(f"401 without content-type: {denied.headers}")

    # A role the route requires (context_extensions, set per route in Envoy) and the user lacks.
    answer = stub.Check(check_request(headers={"authorization": f"Bearer {pat}"},
                                      extensions={"required_role": "system_admin"}),
                        metadata=gateway)
    if (answer.status.code != code_pb2.PERMISSION_DENIED
            or answer.denied_response.status.code != http_status_pb2.StatusCode.Forbidden
            or json.loads(answer.denied_response.body)["id"] != "api.context.permissions.app_error"):
        fail(f"expected a 403: {answer}")

    # A gateway that does not authenticate is refused the call itself.
    try:
        stub.Check(check_request(headers={"authorization": f"Bearer {pat}"}))
        fail("Check without a caller credential was answered")
    except grpc.RpcError as e:
        if e.code() != grpc.StatusCode.UNAUTHENTICATED:
            fail(f"expected UNAUTHENTICATED, got {e.code()}")

    print("ALL OK")


if __name__ == "__main__":
    main()
