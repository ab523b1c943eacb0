"""A raw HTTP/2 client for the HTTP/2 edge and attack tests: Debian's python3-h2 (H2Connection,
with its hyperframe and hpack) over a plain or TLS (ALPN h2) socket. Every wait is bounded.

Import with ``from h2raw import ...`` (tests/integration is on sys.path through conftest.py).

Two layers, so that a test can send what no well-behaved client would and still read the answer:

- Well-formed frames go through ``H2Connection`` (``.conn``): it keeps the stream states, the
  HPACK encoder, the flow-control windows, and checks what the server sends (``validate=True``:
  a frame or header the protocol forbids sets ``.error`` to h2's exception; from then on h2 is
  no longer fed, and the client itself acknowledges SETTINGS and PING and refills windows).
- Raw frames are written as given (``raw_frame``, ``headers_raw``, ``send_raw``), bypassing h2.
- What the server sends is ALSO parsed here, frame by frame, whatever h2 thinks of it:
  ``.frames`` lists every frame received (``Frame``: ``type``, ``name``, ``flags``,
  ``stream_id``, ``payload``; HEADERS/PUSH_PROMISE frames that end a header block carry the
  decoded ``headers``, a list of (name, value) str, latin-1). Waits read from this list, so they
  see streams h2 does not know (opened with raw frames) and frames h2 would refuse.

``H2Raw(port, host="127.0.0.1", tls=False, server_name=None, alpn=("h2",), ca=None,
timeout=5.0, preface=True, settings=None, validate=True, auto_window=True)``
    Connects (TLS when <tls>: no certificate check unless <ca>, a tlsenv Cert or PEM bytes;
    ``.alpn`` is what was negotiated), and with <preface> sends the client preface and SETTINGS
    (h2's defaults updated with <settings>, a {h2.settings.SettingCodes or int: value} dict).
    <auto_window>: received DATA is acknowledged with WINDOW_UPDATE (False: the client's windows
    only shrink, for zero-window tests). <timeout> bounds connect, each send, and is the default
    of every wait. Use as a context manager or call ``close()``.

Sending, through h2: ``request(path="/", method="GET", authority="localhost", scheme=None,
headers=(), body=None, trailers=None, end_stream=True) -> stream id``; ``send_headers(sid,
headers, end_stream=False)``; ``send_data(sid, data, end_stream=False)`` (split to the frame size,
waits for window); ``reset(sid, code=0)``; ``ping(data=b"pingpong") -> data``;
``update_settings(dict)``; ``window_update(increment, sid=None)``; ``goaway(code=0)``;
``next_stream_id()``.

Sending raw: ``raw_frame(type, flags, sid, payload)``; ``headers_raw(sid, headers=None,
block=None, end_stream=False, end_headers=True, split=())`` (a HEADERS frame and CONTINUATIONs:
the block is <headers> as h2 encodes them when it sends them (h2 then knows the stream), or the
raw <block> bytes (h2 does not know the stream: the server's answer on it sets ``.error``, the
waits still see it); <split> the offsets where the block is cut into frames); ``continuation(sid, block=b"", end_headers=False)``;
``send_raw(data)`` (bytes, e.g. many ``frame_bytes(...)`` joined; reads what arrives meanwhile);
``encode_headers(headers) -> bytes``. Each returns False instead of raising if the server already
closed (``.send_error`` says why).

Reading: ``read(timeout)`` reads once (returns the new frames); ``wait_frame(type=None,
sid=None, flags=None, pred=None, since=0, timeout=None) -> Frame``; ``wait_goaway(timeout) ->
GoAway`` (``.error_code``, ``.error_name``, ``.last_stream_id``, ``.debug``);
``wait_ping_ack(data, timeout)``; ``wait_settings_ack(timeout)``; ``wait_response(sid,
timeout) -> H2Response`` (``.status``, ``.headers``, ``.body``, ``.trailers``,
``.informational``, ``.reset`` (RST_STREAM code or None), ``.refused`` (beyond a GOAWAY's last
stream id), ``.ended``, ``.header(name)``); ``wait_closed(timeout) -> bool`` (the server closed
the TCP connection); ``wait_event(cls, timeout, **attrs)`` for h2 events (``.events``).
A wait that times out raises ``H2Timeout`` (an AssertionError) naming what was received.
``.closed`` (EOF or reset seen), ``.error`` (h2's objection to the server), ``.events``.
"""

import select
import socket
import ssl
import struct
import time
from collections import namedtuple

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import h2.settings
import hpack

DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PUSH_PROMISE, PING, GOAWAY, WINDOW_UPDATE, \
    CONTINUATION = range(10)
FRAME_NAMES = ["DATA", "HEADERS", "PRIORITY", "RST_STREAM", "SETTINGS", "PUSH_PROMISE", "PING",
               "GOAWAY", "WINDOW_UPDATE", "CONTINUATION"]
END_STREAM, ACK, END_HEADERS, PADDED, PRIORITY_FLAG = 0x1, 0x1, 0x4, 0x8, 0x20
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


class H2Timeout(AssertionError):
    pass


def error_name(code):
    try:
        return h2.errors.ErrorCodes(code).name
    except ValueError:
        return f"0x{code:x}"


def frame_bytes(type, flags, stream_id, payload=b""):
    """One frame on the wire, exactly as given (any type, flags, stream id, length)."""
    return (struct.pack(">I", len(payload))[1:] + bytes([type, flags])
            + struct.pack(">I", stream_id & 0xFFFFFFFF) + payload)


class Frame(namedtuple("Frame", "type flags stream_id payload headers")):
    @property
    def name(self):
        return FRAME_NAMES[self.type] if self.type < len(FRAME_NAMES) else f"0x{self.type:x}"

    def __repr__(self):
        extra = f" headers={self.headers}" if self.headers is not None else ""
        return (f"<{self.name} sid={self.stream_id} flags=0x{self.flags:x} "
                f"len={len(self.payload)}{extra}>")


GoAway = namedtuple("GoAway", "error_code error_name last_stream_id debug")


class H2Response:
    def __init__(self, stream_id):
        self.stream_id = stream_id
        self.status = None
        self.headers = []
        self.informational = []
        self.trailers = None
        self.body = b""
        self.reset = None
        self.refused = False
        self.ended = False

    def header(self, name):
        """First value of <name> (lower case) in the response headers, or None."""
        return next((v for k, v in self.headers if k == name), None)

    @property
    def done(self):
        return self.ended or self.reset is not None or self.refused

    def __repr__(self):
        return (f"H2Response(sid={self.stream_id} status={self.status} headers={self.headers} "
                f"body={self.body[:200]!r} trailers={self.trailers} reset={self.reset} "
                f"refused={self.refused} ended={self.ended})")


def _enc(headers):
    return [(k.encode() if isinstance(k, str) else k, v.encode() if isinstance(v, str) else v)
            for k, v in headers]


def _header_fragment(frame_type, flags, payload):
    """The header block fragment of a HEADERS/PUSH_PROMISE/CONTINUATION payload."""
    if frame_type == CONTINUATION:
        return payload
    start, end = 0, len(payload)
    if flags & PADDED and payload:
        start, end = 1, len(payload) - payload[0]
    if frame_type == HEADERS and flags & PRIORITY_FLAG:
        start += 5
    elif frame_type == PUSH_PROMISE:
        start += 4
    return payload[start:max(start, end)]


def _data_body(flags, payload):
    if flags & PADDED and payload:
        return payload[1:len(payload) - payload[0]]
    return payload


class H2Raw:
    def __init__(self, port, host="127.0.0.1", tls=False, server_name=None, alpn=("h2",),
                 ca=None, timeout=5.0, preface=True, settings=None, validate=True,
                 auto_window=True):
        self.timeout = timeout
        self.auto_window = auto_window
        self.frames = []
        self.events = []
        self.error = None
        self.send_error = None
        self.closed = False
        self.alpn = None
        self._rbuf = b""
        self._block = None          # (index in frames, type, flags, sid, fragments)
        self._decoder = hpack.Decoder()
        self._decoder.max_header_list_size = 1 << 30
        self._max_sid = 0
        sock = socket.create_connection((host, port), timeout=timeout)
        if tls:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            if ca is not None:
                ctx.load_verify_locations(cadata=(ca if isinstance(ca, bytes)
                                                  else ca.cert_pem).decode())
            else:
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
            if alpn:
                ctx.set_alpn_protocols(list(alpn))
            sock = ctx.wrap_socket(sock, server_hostname=server_name)
            self.alpn = sock.selected_alpn_protocol()
        self.sock = sock
        cfg = h2.config.H2Configuration(client_side=True, header_encoding=None,
                                        validate_outbound_headers=False,
                                        normalize_outbound_headers=False,
                                        validate_inbound_headers=validate,
                                        normalize_inbound_headers=False)
        self.conn = h2.connection.H2Connection(config=cfg)
        self._h2_ok = preface
        if settings:
            values = dict(self.conn.local_settings)
            values.update(settings)
            self.conn.local_settings = h2.settings.Settings(client=True, initial_values=values)
            table = values.get(h2.settings.SettingCodes.HEADER_TABLE_SIZE)
            if table is not None:
                self._decoder.max_allowed_table_size = table
        if preface:
            self.conn.initiate_connection()
            self._flush()

    # ---- plumbing -----------------------------------------------------------------------------

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _write(self, data):
        if not data:
            return True
        if self.send_error is not None:
            return False
        try:
            self.sock.sendall(data)
            return True
        except (OSError, ssl.SSLError) as e:
            self.send_error = e
            return False

    def _flush(self):
        return self._write(self.conn.data_to_send())

    def next_stream_id(self):
        """The next client stream id, above every id used so far (by h2 or raw frames)."""
        sid = max(self.conn.get_next_available_stream_id() if self._h2_ok else 1,
                  self._max_sid + 2 if self._max_sid else 1)
        return sid if sid % 2 else sid + 1

    def _used(self, sid):
        if sid % 2 and sid > self._max_sid:
            self._max_sid = sid

    # ---- sending through h2 -------------------------------------------------------------------

    def send_headers(self, stream_id, headers, end_stream=False):
        """A header list (pseudo-headers included, as given) on <stream_id>, through h2."""
        self._used(stream_id)
        self.conn.send_headers(stream_id, _enc(headers), end_stream=end_stream)
        return self._flush()

    def request(self, path="/", method="GET", authority="localhost", scheme=None, headers=(),
                body=None, trailers=None, end_stream=True, stream_id=None):
        """A request on a new stream (or <stream_id>); returns the stream id. With <body> the
        stream ends after it (or after <trailers>) unless <end_stream> is False."""
        sid = stream_id or self.next_stream_id()
        scheme = scheme or ("https" if isinstance(self.sock, ssl.SSLSocket) else "http")
        hdrs = [(":method", method), (":scheme", scheme), (":authority", authority),
                (":path", path)] + list(headers)
        if body is None and trailers is None:
            self.send_headers(sid, hdrs, end_stream=end_stream)
            return sid
        self.send_headers(sid, hdrs)
        if body is not None:
            self.send_data(sid, body, end_stream=end_stream and trailers is None)
        if trailers is not None:
            self.send_headers(sid, trailers, end_stream=True)
        return sid

    def send_data(self, stream_id, data, end_stream=False, timeout=None):
        """<data> on <stream_id> through h2, in frames of the server's max frame size, waiting
        (bounded) for flow-control window when it runs out."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        view = memoryview(data)
        while True:
            window = self.conn.local_flow_control_window(stream_id)
            n = min(len(view), window, self.conn.max_outbound_frame_size)
            if n > 0 or not view:
                last = n == len(view)
                self.conn.send_data(stream_id, bytes(view[:n]), end_stream=end_stream and last)
                if not self._flush():
                    return False
                view = view[n:]
                if last:
                    return True
                continue
            left = deadline - time.monotonic()
            if left <= 0:
                raise H2Timeout(f"no flow-control window for stream {stream_id} "
                                f"({len(view)} bytes left); frames: {self.frames[-10:]}")
            self.read(min(left, 0.1))
            if self.closed:
                return False

    def reset(self, stream_id, code=0):
        self.conn.reset_stream(stream_id, error_code=code)
        return self._flush()

    def ping(self, data=b"pingpong"):
        """A PING with 8 bytes of <data>; returns the data (wait_ping_ack(data) for the ACK)."""
        self.conn.ping(data)
        self._flush()
        return data

    def update_settings(self, settings):
        self.conn.update_settings(settings)
        return self._flush()

    def window_update(self, increment, stream_id=None):
        """WINDOW_UPDATE of <increment> on <stream_id> (None: the connection), through h2."""
        self.conn.increment_flow_control_window(increment, stream_id=stream_id)
        return self._flush()

    def goaway(self, code=0, last_stream_id=None):
        self.conn.close_connection(error_code=code, last_stream_id=last_stream_id)
        return self._flush()

    # ---- sending raw --------------------------------------------------------------------------

    def encode_headers(self, headers):
        """<headers> as an HPACK block from h2's encoder (its dynamic table stays the one the
        server's decoder mirrors, so later h2 HEADERS still decode)."""
        return self.conn.encoder.encode(_enc(headers))

    def raw_frame(self, type, flags, stream_id, payload=b""):
        if type in (HEADERS, DATA):
            self._used(stream_id)
        return self._write(frame_bytes(type, flags, stream_id, payload))

    def headers_raw(self, stream_id, headers=None, block=None, end_stream=False,
                    end_headers=True, split=()):
        """A header block on <stream_id> as HEADERS + CONTINUATION frames, h2 bypassed: <block>
        (raw bytes) or <headers> encoded; cut at the offsets in <split>; END_HEADERS on the last
        frame only if <end_headers>."""
        if block is None:
            block = self._h2_block(stream_id, headers, end_stream)
        self._used(stream_id)
        cuts = [0] + sorted(split) + [len(block)]
        parts = [block[a:b] for a, b in zip(cuts, cuts[1:])]
        out = []
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            flags = END_HEADERS if last and end_headers else 0
            if i == 0:
                flags |= END_STREAM if end_stream else 0
            out.append(frame_bytes(HEADERS if i == 0 else CONTINUATION, flags, stream_id, part))
        return self.send_raw(b"".join(out))

    def _h2_block(self, stream_id, headers, end_stream):
        """<headers> encoded by h2 sending them on <stream_id> (so h2 knows the stream and
        reads the response), its frames discarded; plain encode_headers when h2 refuses."""
        if self._h2_ok and self._flush():
            try:
                self.conn.send_headers(stream_id, _enc(headers), end_stream=end_stream)
            except h2.exceptions.H2Error:
                return self.encode_headers(headers)
            out, parts = self.conn.data_to_send(), []
            while len(out) >= 9:
                n = int.from_bytes(out[:3], "big")
                if out[3] in (HEADERS, CONTINUATION):
                    parts.append(_header_fragment(out[3], out[4], out[9:9 + n]))
                out = out[9 + n:]
            return b"".join(parts)
        return self.encode_headers(headers)

    def continuation(self, stream_id, block=b"", end_headers=False):
        return self.raw_frame(CONTINUATION, END_HEADERS if end_headers else 0, stream_id, block)

    def send_raw(self, data, chunk=16384):
        """Writes <data> as is, in chunks, reading what the server sends in between (so a flood
        does not dead-lock on a server that answers). False if the server closed first."""
        view = memoryview(data)
        while view:
            if not self._write(bytes(view[:chunk])):
                return False
            view = view[chunk:]
            self.read(0)
        return True

    # ---- receiving ----------------------------------------------------------------------------

    def read(self, timeout=None):
        """Reads what arrives within <timeout> (once readable, reads what is there); returns
        the frames parsed. Sets .closed on EOF or reset."""
        timeout = self.timeout if timeout is None else timeout
        if self.closed:
            return []
        pending = isinstance(self.sock, ssl.SSLSocket) and self.sock.pending()
        if not pending:
            r, _, _ = select.select([self.sock], [], [], max(0.0, timeout))
            if not r:
                return []
        try:
            data = self.sock.recv(65536)
        except ssl.SSLWantReadError:
            return []
        except (OSError, ssl.SSLError):
            data = b""
        if not data:
            self.closed = True
            return []
        return self._feed(data)

    def _feed(self, data):
        start = len(self.frames)
        self._rbuf += data
        while len(self._rbuf) >= 9:
            length = int.from_bytes(self._rbuf[:3], "big")
            if len(self._rbuf) < 9 + length:
                break
            ftype, flags = self._rbuf[3], self._rbuf[4]
            sid = int.from_bytes(self._rbuf[5:9], "big") & 0x7FFFFFFF
            payload = self._rbuf[9:9 + length]
            self._rbuf = self._rbuf[9 + length:]
            self._parse_one(ftype, flags, sid, payload)
        if self._h2_ok:
            try:
                events = self.conn.receive_data(data)
            except h2.exceptions.H2Error as e:
                self.error = e
                self._h2_ok = False
                self.conn.data_to_send()  # h2's GOAWAY: not ours to send
                events = []
            self.events.extend(events)
            if self.auto_window:
                for ev in events:
                    if isinstance(ev, h2.events.DataReceived) and ev.flow_controlled_length:
                        try:
                            self.conn.acknowledge_received_data(ev.flow_controlled_length,
                                                                ev.stream_id)
                        except h2.exceptions.H2Error:
                            pass
            if self._h2_ok:
                self._flush()
        return self.frames[start:]

    def _parse_one(self, ftype, flags, sid, payload):
        headers = None
        if ftype in (HEADERS, PUSH_PROMISE) or (ftype == CONTINUATION and self._block):
            if ftype != CONTINUATION:
                self._block = (len(self.frames), ftype, flags, sid, [])
            self._block[4].append(_header_fragment(ftype, flags, payload))
            if flags & END_HEADERS:
                try:
                    decoded = self._decoder.decode(b"".join(self._block[4]), raw=True)
                    headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in decoded]
                except hpack.HPACKError as e:
                    headers = [("!hpack-error", str(e))]
                i, t0, f0, s0, _ = self._block
                if ftype == CONTINUATION:  # the decoded list goes on the HEADERS frame
                    self.frames[i] = self.frames[i]._replace(headers=headers)
                    headers = None
                self._block = None
        self.frames.append(Frame(ftype, flags, sid, payload, headers))
        if self._h2_ok:
            return
        # h2 has given up on this connection: answer what a client must answer ourselves.
        if ftype == SETTINGS and not flags & ACK:
            self._write(frame_bytes(SETTINGS, ACK, 0))
        elif ftype == PING and not flags & ACK:
            self._write(frame_bytes(PING, ACK, 0, payload))
        elif ftype == DATA and self.auto_window and payload:
            inc = struct.pack(">I", len(payload))
            self._write(frame_bytes(WINDOW_UPDATE, 0, 0, inc) + frame_bytes(WINDOW_UPDATE, 0, sid, inc))

    def _summary(self):
        return (f"closed={self.closed} h2-error={self.error!r} last frames: "
                f"{self.frames[-12:]}")

    def wait_frame(self, type=None, stream_id=None, flags=None, pred=None, since=0,
                   timeout=None):
        """The first frame from index <since> of .frames matching <type>, <stream_id>, all bits
        of <flags> and <pred>(frame); raises H2Timeout if none within <timeout>."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        i = since
        while True:
            while i < len(self.frames):
                f = self.frames[i]
                i += 1
                if ((type is None or f.type == type)
                        and (stream_id is None or f.stream_id == stream_id)
                        and (flags is None or f.flags & flags == flags)
                        and (pred is None or pred(f))):
                    return f
            left = deadline - time.monotonic()
            if left <= 0 or self.closed:
                want = FRAME_NAMES[type] if type is not None and type < 10 else type
                raise H2Timeout(f"no {want} frame (stream {stream_id}) "
                                f"{'before the close' if self.closed else 'in time'}; "
                                f"{self._summary()}")
            self.read(left)

    def wait_goaway(self, timeout=None):
        """The server's (first) GOAWAY: GoAway(error_code, error_name, last_stream_id, debug)."""
        f = self.wait_frame(GOAWAY, timeout=timeout)
        last, code = struct.unpack(">II", f.payload[:8])
        return GoAway(code, error_name(code), last & 0x7FFFFFFF, f.payload[8:])

    def goaways(self):
        """Every GOAWAY received so far, in order."""
        out = []
        for f in self.frames:
            if f.type == GOAWAY and len(f.payload) >= 8:
                last, code = struct.unpack(">II", f.payload[:8])
                out.append(GoAway(code, error_name(code), last & 0x7FFFFFFF, f.payload[8:]))
        return out

    def wait_ping_ack(self, data=b"pingpong", timeout=None):
        return self.wait_frame(PING, 0, ACK, pred=lambda f: f.payload == data, timeout=timeout)

    def wait_settings_ack(self, timeout=None):
        return self.wait_frame(SETTINGS, 0, ACK, timeout=timeout)

    def response(self, stream_id):
        """What .frames hold so far of the response on <stream_id> (an H2Response)."""
        r = H2Response(stream_id)
        for f in self.frames:
            if f.type == GOAWAY and len(f.payload) >= 8:
                if stream_id > struct.unpack(">I", f.payload[:4])[0] & 0x7FFFFFFF:
                    r.refused = True
            if f.stream_id != stream_id:
                continue
            if f.type == HEADERS and f.headers is not None:
                status = next((v for k, v in f.headers if k == ":status"), None)
                if r.status is None and status is not None and status.startswith("1"):
                    r.informational.append(f.headers)
                elif r.status is None:
                    r.status = int(status) if status and status.isdigit() else status
                    r.headers = f.headers
                else:
                    r.trailers = f.headers
            elif f.type == DATA:
                r.body += _data_body(f.flags, f.payload)
            elif f.type == RST_STREAM and len(f.payload) >= 4:
                r.reset = struct.unpack(">I", f.payload[:4])[0]
            if f.type in (HEADERS, DATA) and f.flags & END_STREAM:
                r.ended = True
        return r

    def wait_response(self, stream_id, timeout=None):
        """The response on <stream_id> once it ended (END_STREAM), was reset, or refused by a
        GOAWAY; raises H2Timeout if none of these within <timeout> or before the close."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while True:
            r = self.response(stream_id)
            if r.done:
                return r
            left = deadline - time.monotonic()
            if left <= 0 or self.closed:
                raise H2Timeout(f"stream {stream_id} not finished "
                                f"{'before the close' if self.closed else 'in time'}: {r}; "
                                f"{self._summary()}")
            self.read(left)

    def wait_closed(self, timeout=None):
        """True once the server has closed the connection (EOF or reset), False after
        <timeout>."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while not self.closed:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self.read(left)
        return True

    def wait_event(self, cls, timeout=None, **attrs):
        """The first h2 event of class <cls> whose attributes equal <attrs>."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        i = 0
        while True:
            while i < len(self.events):
                ev = self.events[i]
                i += 1
                if isinstance(ev, cls) and all(getattr(ev, k, None) == v
                                               for k, v in attrs.items()):
                    return ev
            left = deadline - time.monotonic()
            if left <= 0 or self.closed:
                raise H2Timeout(f"no {cls.__name__} {attrs}; {self._summary()}")
            self.read(left)
