"""What answers at a Ray address, asked in a few seconds before `ray.init` asks at all.

`ray.init(address=...)` retries for minutes when something that is not a Ray head listens
there (an HTTP server, the dashboard's port, another service on a recycled port): one
gRPC call to the GCS, bounded, tells a Ray head from anything else, and a look at what the
other thing says names it. No token is sent: a head with token authentication refuses the
call as UNAUTHENTICATED, which is a Ray head answering all the same; a head too loaded to
answer in time still greets a connection as every gRPC server does, and is let through.
"""

from __future__ import annotations

import socket
from typing import Any

GCS_TIMEOUT_S = 10.0  # a loaded head still answers well within this
SNIFF_TIMEOUT_S = 1.0
HTTP2 = "an HTTP/2 server"  # what gRPC speaks: its first frame is SETTINGS, sent on accept


def split(address: str) -> tuple[str, int] | None:
    """(host, port) of `[ray://]HOST:PORT`, or None when it is not of that form."""
    host, _, port = address.strip().removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        return None
    return host.strip("[]"), int(port)


def ask_gcs(address: str, timeout: float) -> tuple[Any, str]:
    """(gRPC status code, details) of a GetClusterId call to the GCS at `address`, sent
    without a token. grpc's StatusCode.OK when it answered."""
    import grpc
    from ray.core.generated import gcs_service_pb2, gcs_service_pb2_grpc

    with grpc.insecure_channel(address) as channel:
        stub = gcs_service_pb2_grpc.NodeInfoGcsServiceStub(channel)
        try:
            stub.GetClusterId(gcs_service_pb2.GetClusterIdRequest(), timeout=timeout)
        except grpc.RpcError as exc:
            return exc.code(), exc.details() or ""
    return grpc.StatusCode.OK, ""


def not_ray(address: str, timeout: float | None = None) -> str | None:
    """None when a Ray head (its GCS; for `ray://`, any gRPC server) answers at `address`,
    else what listens there instead, in words ("an HTTP server (...)"). For an address that
    accepts connections; one of another form is Ray's to judge."""
    import grpc

    where = split(address)
    if where is None:
        return None
    timeout = timeout or GCS_TIMEOUT_S
    client = address.strip().startswith("ray://")  # Ray Client: another gRPC service
    code, details = ask_gcs(address.strip().removeprefix("ray://"), timeout)  # [v6]:port kept
    if code in (grpc.StatusCode.OK, grpc.StatusCode.UNAUTHENTICATED) or (
            client and code == grpc.StatusCode.UNIMPLEMENTED):
        return None
    if code == grpc.StatusCode.UNIMPLEMENTED:
        return "a gRPC server of another kind (a Ray Client server's address starts `ray://`)"
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        said = sniff(where)
        if said == HTTP2:  # a gRPC server, busy: a loaded head answers late; Ray's to judge
            return None
        return said or f"a server that accepts connections but did not answer within {timeout:g} s"
    return sniff(where) or f"a server that does not speak gRPC ({details.strip() or code.name})"


def sniff(where: tuple[str, int]) -> str | None:
    """What a non-Ray server says: its greeting (SSH, SMTP, ...) or its answer to an HTTP
    request; None when it says nothing."""
    try:
        with socket.create_connection(where, timeout=SNIFF_TIMEOUT_S) as conn:
            conn.settimeout(SNIFF_TIMEOUT_S)
            first = _read(conn)
            if first is None:
                conn.sendall(b"HEAD / HTTP/1.0\r\n\r\n")
                first = _read(conn)
    except OSError:
        return None
    if first is None:
        return None
    if first in ("", HTTP2):
        return first or "a server that closes connections at once"
    if first.startswith("HTTP/"):
        return f"an HTTP server (it answered `{first}`)"
    return f"a server that greets with `{first}`"


def _read(conn: socket.socket) -> str | None:
    """The first line the peer sends ("" when it closes; HTTP2 for an HTTP/2 SETTINGS frame),
    or None when it stays silent."""
    try:
        data = conn.recv(256)
    except socket.timeout:
        return None
    except ConnectionResetError:
        return ""
    if len(data) >= 9 and data[3] == 0x04 and data[5:9] == bytes(4):  # type SETTINGS, stream 0
        return HTTP2
    line = data.split(b"\n", 1)[0].decode("ascii", "replace").strip()
    text = "".join(c if c.isprintable() else "?" for c in line)
    return text[:80] + ("…" if len(text) > 80 else "") if data else ""
