"""The gRPC test client: Debian's python3-grpcio calling the Peer service of peer.proto, each call
bounded in time and returned as a Result instead of raising. See grpc_peer/__init__.py."""

import queue
import threading
import time

import grpc

from .stubs import load

pb, pb_grpc = load()


class Result:
    """How one call ended. ``code`` (grpc.StatusCode), ``details`` (the status message, or None),
    ``initial_metadata`` and ``trailing_metadata`` (lists of (key, value); values of -bin keys
    are bytes), ``replies`` (peer_pb2.Reply messages received, in order), ``elapsed`` (s)."""

    def __init__(self, code, details, initial, trailing, replies, elapsed):
        self.code = code
        self.details = details
        self.initial_metadata = [(k, v) for k, v in initial or ()]
        self.trailing_metadata = [(k, v) for k, v in trailing or ()]
        self.replies = replies
        self.elapsed = elapsed

    @property
    def ok(self):
        return self.code == grpc.StatusCode.OK

    @property
    def payloads(self):
        return [r.payload for r in self.replies]

    @property
    def metadata(self):
        """Initial then trailing metadata, one list."""
        return self.initial_metadata + self.trailing_metadata

    def header(self, key):
        """First value of <key> in the initial metadata, or None."""
        return next((v for k, v in self.initial_metadata if k == key), None)

    def trailer(self, key):
        """First value of <key> in the trailing metadata, or None."""
        return next((v for k, v in self.trailing_metadata if k == key), None)

    def __repr__(self):
        return (f"Result({self.code.name}, {self.details!r}, replies={len(self.replies)}, "
                f"initial={self.initial_metadata!r}, trailing={self.trailing_metadata!r})")


def request(req=None, **fields):
    """A peer_pb2.Request from a Request, a dict or keyword fields."""
    if isinstance(req, dict):
        return pb.Request(**req)
    if req is None:
        return pb.Request(**fields)
    return req


def _pem(x):
    if x is None or isinstance(x, bytes):
        return x
    return getattr(x, "chain_pem", None) or x.cert_pem


class Client:
    """A gRPC channel to the peer server (or to Portico in front of it).

    <ca>: TLS, trusting this CA (a tlsenv Cert or PEM bytes); None: h2c. <server_name>: the name
    checked in the server certificate (and sent as SNI) when it is not <host>. <cert>: a client
    certificate (tlsenv Cert) for mTLS. <authority>: the :authority of the calls. <options>: more
    channel options. The channel has its own connection (grpc.use_local_subchannel_pool) and no
    retries (grpc.enable_retries=0), so a lost call shows as a failed call."""

    def __init__(self, port, host="127.0.0.1", ca=None, server_name=None, cert=None,
                 authority=None, options=()):
        self.target = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        opts = [("grpc.use_local_subchannel_pool", 1), ("grpc.enable_retries", 0)]
        if authority:
            opts.append(("grpc.default_authority", authority))
        if server_name:
            opts.append(("grpc.ssl_target_name_override", server_name))
        opts += list(options)
        if ca is not None:
            creds = grpc.ssl_channel_credentials(
                root_certificates=_pem(ca),
                private_key=cert.key_pem if cert is not None else None,
                certificate_chain=cert.chain_pem if cert is not None else None)
            self.channel = grpc.secure_channel(self.target, creds, options=opts)
        else:
            self.channel = grpc.insecure_channel(self.target, options=opts)
        self.stub = pb_grpc.PeerStub(self.channel)

    def close(self):
        self.channel.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def wait_ready(self, timeout=5.0):
        """Waits until the channel is connected; raises grpc.FutureTimeoutError after <timeout>."""
        grpc.channel_ready_future(self.channel).result(timeout=timeout)

    def _run(self, call, collect, bound):
        """Collects <call> (a grpc Call) with <collect>, cancelling it after <bound> seconds."""
        t0 = time.monotonic()
        timer = threading.Timer(bound, call.cancel)
        timer.daemon = True
        timer.start()
        replies = []
        try:
            collect(call, replies)
        except (grpc.RpcError, grpc.FutureCancelledError):
            pass  # the call's code and details say what happened
        finally:
            timer.cancel()
        return Result(call.code(), call.details(), call.initial_metadata(),
                      call.trailing_metadata(), replies, time.monotonic() - t0)

    @staticmethod
    def _one(call, replies):
        replies.append(call.result())

    @staticmethod
    def _many(call, replies):
        for r in call:
            replies.append(r)

    def unary(self, req=None, metadata=(), timeout=5.0, bound=10.0, **fields):
        """One Unary call. <req>: a Request or dict, else <fields> (sleep_ms, fail_code,
        fail_message, echo_metadata, payload_size, payload, tag). <timeout>: the gRPC deadline
        (sent as grpc-timeout; None: none). <bound>: the call is cancelled after this many
        seconds whatever happens (code CANCELLED)."""
        call = self.stub.Unary.future(request(req, **fields), metadata=list(metadata),
                                      timeout=timeout)
        return self._run(call, self._one, bound)

    def server_stream(self, req=None, metadata=(), timeout=5.0, bound=10.0, **fields):
        """One ServerStream call (<fields> as unary, plus replies=N)."""
        call = self.stub.ServerStream(request(req, **fields), metadata=list(metadata),
                                      timeout=timeout)
        return self._run(call, self._many, bound)

    def client_stream(self, reqs, metadata=(), timeout=5.0, bound=10.0):
        """One ClientStream call sending <reqs> (Requests or dicts; any iterable)."""
        call = self.stub.ClientStream.future((request(r) for r in reqs),
                                             metadata=list(metadata), timeout=timeout)
        return self._run(call, self._one, bound)

    def bidi(self, reqs, metadata=(), timeout=5.0, bound=10.0, lockstep=False):
        """One Bidi call sending <reqs>. <lockstep>: each request is sent only once the replies
        to the previous one have arrived (proves that nothing between client and server buffers
        a whole stream); else all are sent as fast as possible."""
        reqs = [request(r) for r in reqs]
        got = queue.Queue()
        deadline = time.monotonic() + bound

        def send():
            for i, r in enumerate(reqs):
                if lockstep and i > 0:
                    want = reqs[i - 1].replies or 1
                    for _ in range(want):
                        try:
                            rep = got.get(timeout=max(0.0, deadline - time.monotonic()))
                        except queue.Empty:
                            return
                        if rep is None:  # the call ended
                            return
                yield r

        def collect(call, replies):
            try:
                for rep in call:
                    replies.append(rep)
                    got.put(rep)
            finally:
                got.put(None)

        call = self.stub.Bidi(send(), metadata=list(metadata), timeout=timeout)
        return self._run(call, collect, bound)
