"""What the gRPC test server and client both need: the reply payload pattern and the mapping of
a status code number to grpc.StatusCode."""

import grpc

_PATTERN = bytes(range(33, 127)) * 8  # printable ASCII, 752 bytes


def payload(size, seq=0):
    """The <size> bytes a reply carries: printable ASCII starting at offset <seq> of a fixed
    pattern, so replies of one call differ and a truncated or reordered body is visible."""
    if size <= 0:
        return b""
    start = seq % 94
    reps = (start + size) // len(_PATTERN) + 1
    return (_PATTERN * reps)[start:start + size]


_CODES = {c.value[0]: c for c in grpc.StatusCode}


def status_from_int(code):
    """grpc.StatusCode for the number <code> (UNKNOWN for a number gRPC does not define)."""
    return _CODES.get(code, grpc.StatusCode.UNKNOWN)
