"""Generates Python stubs from proto/ with grpcio-tools and runs the token flow against a
running token-service: create, introspect, revoke, introspect again.

Environment: TS_GRPC (host:port), TS_ADMIN_TOKEN, TS_USER_ID, TS_PROTO_DIR.
Exits non-zero on the first failure; prints "ALL OK" at the end.
"""

import importlib
import os
import sys
import tempfile

import grpc
from grpc_tools import protoc


def generate(proto_dir: str, out_dir: str) -> None:
    import grpc_tools

    well_known = os.path.join(os.path.dirname(grpc_tools.__file__), "_proto")
    protos = [
        "token_service/v1/token_service.proto",
        "token_service/v1/resources.proto",
        "google/api/annotations.proto",
        "google/api/http.proto",
    ]
    code = protoc.main(
        ["grpc_tools.protoc", f"-I{proto_dir}", f"-I{well_known}",
         f"--python_out={out_dir}", f"--grpc_python_out={out_dir}", *protos]
    )
    if code != 0:
        sys.exit(f"protoc failed with {code}")


def main() -> None:
    out = tempfile.mkdtemp(prefix="ts-stubs-")
    generate(os.environ["TS_PROTO_DIR"], out)
    sys.path.insert(0, out)
    pb = importlib.import_module("token_service.v1.token_service_pb2")
    resources = importlib.import_module("token_service.v1.resources_pb2")
    stubs = importlib.import_module("token_service.v1.token_service_pb2_grpc")

    channel = grpc.insecure_channel(os.environ["TS_GRPC"])
    service = stubs.TokenServiceStub(channel)
    auth = [("authorization", f"Bearer {os.environ['TS_ADMIN_TOKEN']}")]

    created = service.CreateUserAccessToken(
        pb.CreateUserAccessTokenRequest(user_id=os.environ["TS_USER_ID"], description="from python"),
        metadata=auth,
    )
    assert len(created.token) == 26, created
    token_id = created.user_access_token.id

    answer = service.IntrospectToken(pb.IntrospectTokenRequest(token=created.token), metadata=auth)
    assert answer.active and answer.token_id == token_id, answer
    assert answer.kind == resources.TOKEN_KIND_PERSONAL_ACCESS_TOKEN, answer
    assert answer.user_id == os.environ["TS_USER_ID"], answer

    service.RevokeUserAccessToken(pb.RevokeUserAccessTokenRequest(token_id=token_id), metadata=auth)
    answer = service.IntrospectToken(pb.IntrospectTokenRequest(token=created.token), metadata=auth)
    assert not answer.active, answer

    try:
        service.RevokeUserAccessToken(pb.RevokeUserAccessTokenRequest(token_id=token_id), metadata=auth)
    except grpc.RpcError as err:
        assert err.code() == grpc.StatusCode.NOT_FOUND, err
    else:
        raise AssertionError("a second revoke must fail")
    print("ALL OK")


if __name__ == "__main__":
    main()
