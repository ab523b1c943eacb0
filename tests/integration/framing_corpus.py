"""The adversarial request corpus of test_framing_property.py, generated with a fixed seed.

``corpus()``: [(name, bytes)], at least 300 single requests; a name is "<class>/<case>", and the
class is what the test's report groups failures by. ``pairs()``: pipelined pairs of them, named
"pipelined/<first>+<second>". Same output on every call and every machine.

Classes: connection-names (Connection naming framing and routing headers), connection-multiple
(options in a second Connection header), chunk-ext, trailers, chunk-size (huge, overlong,
32-bit-truncating, malformed sizes), te-codings, cl-variants, obs-fold, bare-cr-lf, http10,
absolute-form, dot-segments, nul, smuggling (the cases of test_http1_parser.py), misc (Expect,
Upgrade, methods, headers Portico sets) and mutation (random byte edits of valid requests).
"""

import random

from test_http1_parser import BAD_400, SMUGGLING

SEED = 1309


def req(method=b"GET", target=b"/p", headers=((b"Host", b"h"),), body=b"",
        version=b"HTTP/1.1"):
    head = method + b" " + target + b" " + version + b"\r\n"
    return head + b"".join(n + b": " + v + b"\r\n" for n, v in headers) + b"\r\n" + body


def smuggled(path=b"/smuggled"):
    return b"GET " + path + b" HTTP/1.1\r\nHost: h\r\nX-Smuggled: 1\r\n\r\n"


def chunked(data=b"hello", size=None, ext=b"", trailers=b""):
    size = b"%x" % len(data) if size is None else size
    return size + ext + b"\r\n" + data + b"\r\n0\r\n" + trailers + b"\r\n"


BODY = b"a=1&b=2"
SMUG = smuggled()


def post_cl(*headers, body=BODY, target=b"/p"):
    return req(b"POST", target, ((b"Host", b"h"), (b"Content-Length", b"%d" % len(body)))
               + tuple(headers), body)


def post_te(*headers, body=None, target=b"/p"):
    return req(b"POST", target, ((b"Host", b"h"), (b"Transfer-Encoding", b"chunked"))
               + tuple(headers), chunked(BODY) if body is None else body)


def connection_names():
    out = []
    opts = [b"content-length", b"Content-Length", b"transfer-encoding", b"host", b"Host",
            b"te", b"upgrade", b"keep-alive", b"close", b"x-a", b"x-a, content-length",
            b"content-length, host, transfer-encoding, te, upgrade"]
    for i, o in enumerate(opts):
        extra = ((b"Connection", o), (b"X-A", b"secret"), (b"TE", b"trailers"),
                 (b"Upgrade", b"websocket"))
        out.append((f"connection-names/cl-{i}", post_cl(*extra)))
        out.append((f"connection-names/te-{i}", post_te(*extra)))
        out.append((f"connection-names/get-{i}", req(b"GET", b"/g", ((b"Host", b"h"),) + extra)))
    # the reproducer of issue 9 point 1
    out.append(("connection-names/issue9-smuggle",
                b"POST /backend/a HTTP/1.1\r\nHost: a\r\nConnection: Content-Length\r\n"
                b"Content-Length: 48\r\n\r\nGET /internal-only/SMUGGLED HTTP/1.1\r\nX-Ignore: "))
    out.append(("connection-names/cl-smuggle",
                post_cl((b"Connection", b"content-length"), body=SMUG)))
    out.append(("connection-names/te-smuggle",
                post_te((b"Connection", b"transfer-encoding"), body=chunked(SMUG))))
    return out


def connection_multiple():
    out = []
    sets = [[b"keep-alive", b"x-secret"], [b"x-secret", b"close"], [b"close", b"host"],
            [b"keep-alive", b"content-length"], [b"keep-alive", b"transfer-encoding"],
            [b"", b"x-secret"], [b"keep-alive", b"x-secret, x-other"],
            [b"keep-alive", b"keep-alive", b"x-secret"]]
    for i, s in enumerate(sets):
        hs = tuple((b"Connection", v) for v in s) + ((b"X-Secret", b"s"), (b"X-Other", b"o"))
        out.append((f"connection-multiple/get-{i}", req(b"GET", b"/m", ((b"Host", b"h"),) + hs)))
        out.append((f"connection-multiple/cl-{i}", post_cl(*hs)))
        out.append((f"connection-multiple/te-{i}", post_te(*hs)))
    return out


def chunk_ext():
    exts = [b";a", b";a=b", b';a="q;\\"x"', b" ;a=b", b"\t;a=b", b";a=b;c", b";" + b"x" * 1000,
            b";a=b ", b";a=\"\"", b";a=\"\x80\"", b";=b", b";a=b\rc", b";a=\"unterminated",
            b";a\x00", b" ", b";a=b\r\n\r\n" + SMUG]
    out = []
    for i, e in enumerate(exts):
        body = b"5" + e + b"\r\nhello\r\n3;x=y\r\nabc\r\n0" + e + b"\r\n\r\n"
        out.append((f"chunk-ext/{i}", post_te(body=body)))
    return out


def trailers():
    ts = [b"X-T: 1\r\n", b"X-T: 1\r\nX-U: 2\r\n", b"Content-Length: 5\r\n", b"Host: evil\r\n",
          b"Transfer-Encoding: chunked\r\n", b"X-T:\r\n", b"X-T: a\r\n b\r\n", b"X-T: a\n",
          b"X T: 1\r\n", b"X-T: \x00\r\n", b"X-T: " + b"v" * 3000 + b"\r\n",
          b"X-T: 1\r\n\r\n" + SMUG[:-2]]
    return [(f"trailers/{i}", post_te(body=chunked(BODY, trailers=t))) for i, t in enumerate(ts)]


def chunk_size():
    sizes = [b"1000000000000000000000001", b"100000001", b"100000005", b"ffffffffffffffff",
             b"10000000000000000", b"4000000000000000", b"3fffffffffffffff",
             b"0000000000000000005", b"00000000000000000000000000000000005", b"-5", b"0x5",
             b"+5", b"5 ", b" 5", b"5\t", b"5 ;a", b"A", b"a", b"g", b"5\n", b"5\r", b"",
             b"\xff5"]
    out = []
    for i, s in enumerate(sizes):
        body = s + b"\r\nhello\r\n0\r\n\r\n" + SMUG
        out.append((f"chunk-size/{i}", post_te(body=body)))
    out.append(("chunk-size/last-nonzero-zeros", post_te(body=b"5\r\nhello\r\n000\r\n\r\n")))
    out.append(("chunk-size/short-data", post_te(body=b"5\r\nhel\r\n0\r\n\r\n" + SMUG)))
    out.append(("chunk-size/long-data", post_te(body=b"3\r\nhello\r\n0\r\n\r\n" + SMUG)))
    out.append(("chunk-size/no-data-crlf", post_te(body=b"5\r\nhello0\r\n\r\n" + SMUG)))
    return out


def te_codings():
    vals = [b"gzip, chunked", b"chunked, gzip", b" chunked", b"chunked ", b"Chunked",
            b"CHUNKED", b"identity", b"identity, chunked", b"chunked, chunked", b"chunked,",
            b",chunked", b"x-gzip, chunked", b"deflate,chunked", b"chunked;q=1",
            b'"chunked"', b"\tchunked", b"xchunked", b"chunked\x0b", b"gzip", b"",
            b"compress, chunked", b"chunked, identity", b"chunk", b"chunked\x00"]
    out = []
    for i, v in enumerate(vals):
        out.append((f"te-codings/{i}", req(b"POST", b"/t", ((b"Host", b"h"),
                                                            (b"Transfer-Encoding", v)),
                                           chunked(BODY) + SMUG)))
    for i, (a, c) in enumerate([(b"gzip", b"chunked"), (b"chunked", b"gzip"),
                                (b"chunked", b""), (b"chunked", b"chunked"),
                                (b"identity", b"chunked")]):
        out.append((f"te-codings/two-{i}", req(b"POST", b"/t", (
            (b"Host", b"h"), (b"Transfer-Encoding", a), (b"Transfer-Encoding", c)),
            chunked(BODY) + SMUG)))
    for i, cl in enumerate([b"0", b"5", b"%d" % len(chunked(BODY))]):
        out.append((f"te-codings/te-cl-{i}", req(b"POST", b"/t", (
            (b"Host", b"h"), (b"Transfer-Encoding", b"chunked"), (b"Content-Length", cl)),
            chunked(BODY) + SMUG)))
        out.append((f"te-codings/cl-te-{i}", req(b"POST", b"/t", (
            (b"Host", b"h"), (b"Content-Length", cl), (b"Transfer-Encoding", b"chunked")),
            chunked(BODY) + SMUG)))
    return out


def cl_variants():
    n = b"%d" % len(BODY)
    vals = [[n, n], [n, b"5"], [n + b", " + n], [b"+" + n], [b"-1"], [b"0x7"], [b" " + n],
            [b"0" + n], [n + b" "], [b"99999999999999999999"], [b"18446744073709551623"],
            [b"9223372036854775807"], [b"0", n], [b""], [b"7\x00"], [b"1e1"]]
    out = []
    for i, v in enumerate(vals):
        hs = ((b"Host", b"h"),) + tuple((b"Content-Length", x) for x in v)
        out.append((f"cl-variants/{i}", req(b"POST", b"/c", hs, BODY + SMUG)))
    out.append(("cl-variants/get-with-body", req(b"GET", b"/c", ((b"Host", b"h"),
                                                                 (b"Content-Length", n)), BODY)))
    out.append(("cl-variants/smaller", req(b"POST", b"/c", ((b"Host", b"h"),
                                                            (b"Content-Length", b"3")),
                                           BODY[:3] + SMUG)))
    return out


def obs_fold():
    return [
        ("obs-fold/value", b"GET /f HTTP/1.1\r\nHost: h\r\nX-A: a\r\n folded\r\n\r\n"),
        ("obs-fold/tab", b"GET /f HTTP/1.1\r\nHost: h\r\nX-A: a\r\n\tfolded\r\n\r\n"),
        ("obs-fold/te", b"POST /f HTTP/1.1\r\nHost: h\r\nTransfer-Encoding:\r\n chunked\r\n"
                        b"\r\n" + chunked(BODY)),
        ("obs-fold/cl", b"POST /f HTTP/1.1\r\nHost: h\r\nContent-Length:\r\n 7\r\n\r\n" + BODY),
        ("obs-fold/first", b"GET /f HTTP/1.1\r\n Host: h\r\n\r\n"),
        ("obs-fold/host", b"GET /f HTTP/1.1\r\nHost: h\r\n evil\r\n\r\n"),
    ]


def bare_cr_lf():
    return [
        ("bare-cr-lf/request-line-lf", b"GET /b HTTP/1.1\nHost: h\r\n\r\n"),
        ("bare-cr-lf/request-line-cr", b"GET /b HTTP/1.1\rHost: h\r\n\r\n"),
        ("bare-cr-lf/header-lf", b"GET /b HTTP/1.1\r\nHost: h\nX-A: 1\r\n\r\n"),
        ("bare-cr-lf/header-cr", b"GET /b HTTP/1.1\r\nHost: h\rX-A: 1\r\n\r\n"),
        ("bare-cr-lf/end-lf", b"GET /b HTTP/1.1\r\nHost: h\r\n\n"),
        ("bare-cr-lf/all-lf", b"GET /b HTTP/1.1\nHost: h\n\n"),
        ("bare-cr-lf/cl-lf", b"POST /b HTTP/1.1\r\nHost: h\r\nContent-Length: 7\n\r\n" + BODY),
        ("bare-cr-lf/te-lf", b"POST /b HTTP/1.1\r\nHost: h\nTransfer-Encoding: chunked\r\n\r\n"
                             + chunked(BODY)),
        ("bare-cr-lf/chunk-line-lf", post_te(body=b"7\n" + BODY + b"\r\n0\r\n\r\n")),
        ("bare-cr-lf/chunk-end-lf", post_te(body=b"7\r\n" + BODY + b"\n0\r\n\r\n")),
        ("bare-cr-lf/last-lf", post_te(body=b"7\r\n" + BODY + b"\r\n0\n\n")),
        ("bare-cr-lf/leading-crlf", b"\r\nGET /b HTTP/1.1\r\nHost: h\r\n\r\n"),
        ("bare-cr-lf/two-leading-crlf", b"\r\n\r\nGET /b HTTP/1.1\r\nHost: h\r\n\r\n"),
        ("bare-cr-lf/leading-lf", b"\nGET /b HTTP/1.1\r\nHost: h\r\n\r\n"),
    ]


def http10():
    v = b"HTTP/1.0"
    return [
        ("http10/get", req(version=v)),
        ("http10/get-no-host", req(headers=(), version=v)),
        ("http10/keep-alive", req(headers=((b"Host", b"h"), (b"Connection", b"keep-alive")),
                                  version=v)),
        ("http10/post-cl", req(b"POST", b"/p", ((b"Host", b"h"), (b"Content-Length", b"7")),
                               BODY, version=v)),
        ("http10/post-cl-no-host", req(b"POST", b"/p", ((b"Content-Length", b"7"),), BODY,
                                       version=v)),
        ("http10/post-te", req(b"POST", b"/p", ((b"Host", b"h"),
                                                (b"Transfer-Encoding", b"chunked")),
                               chunked(BODY) + SMUG, version=v)),
        ("http10/post-no-length", req(b"POST", b"/p", ((b"Host", b"h"),), BODY, version=v)),
        ("http10/absolute", req(b"GET", b"http://h/abs", (), version=v)),
        ("http10/cl-smuggle", req(b"POST", b"/p", ((b"Host", b"h"), (b"Connection",
                                                                     b"keep-alive, content-length"),
                                                   (b"Content-Length", b"%d" % len(SMUG))),
                                  SMUG, version=v)),
    ]


def absolute_form():
    ts = [(b"http://h/abs", b"h"), (b"http://other.example/abs", b"h"),
          (b"http://h:80/abs?q=1", b"h"), (b"https://h/abs", b"h"), (b"http://h", b"h"),
          (b"http://h?x=1", b"h"), (b"http://user@h/abs", b"h"), (b"HTTP://H/abs", b"h"),
          (b"http://h/abs", None), (b"http://[::1]:8080/abs", b"h"), (b"http:///abs", b"h"),
          (b"ftp://h/abs", b"h")]
    out = []
    for i, (t, host) in enumerate(ts):
        hs = ((b"Host", host),) if host else ()
        out.append((f"absolute-form/{i}", req(b"GET", t, hs)))
    out.append(("absolute-form/post", req(b"POST", b"http://other.example/abs",
                                          ((b"Host", b"h"), (b"Content-Length", b"7")), BODY)))
    return out


def dot_segments():
    ts = [b"/%2e%2e/admin", b"/backend/%2e%2e/admin", b"/a/../b", b"/a/./b", b"/%2E%2E/",
          b"/a/%2e/b", b"/..%2f", b"//a", b"/a%2fb", b"/%41bc", b"/a/b/../../../c", b"/..",
          b"/a/..?x=/../y", b"/%2e%2e%2fadmin", b"/a/%2E%2e/b", b"/.%2e/x"]
    return [(f"dot-segments/{i}", req(b"GET", t)) for i, t in enumerate(ts)]


def nul():
    return [
        ("nul/target", req(b"GET", b"/a\x00b")),
        ("nul/value", req(headers=((b"Host", b"h"), (b"X-A", b"a\x00b")))),
        ("nul/name", req(headers=((b"Host", b"h"), (b"X-\x00A", b"a")))),
        ("nul/method", req(b"G\x00T")),
        ("nul/host", req(headers=((b"Host", b"h\x00evil"),))),
        ("nul/chunk-data", post_te(body=chunked(b"a\x00b\x00"))),
        ("nul/cl-data", post_cl(body=b"\x00\x00\x00")),
        ("nul/chunk-size", post_te(body=b"\x005\r\nhello\r\n0\r\n\r\n")),
    ]


def smuggling():
    out = [(f"smuggling/{k}", v.replace(b"/backend/", b"/")) for k, v in SMUGGLING.items()]
    out += [(f"smuggling/{k}", v.replace(b"/backend/", b"/")) for k, v in BAD_400.items()]
    return out


def misc():
    return [
        ("misc/expect", post_cl((b"Expect", b"100-continue"))),
        ("misc/expect-te", post_te((b"Expect", b"100-continue"))),
        ("misc/upgrade", req(headers=((b"Host", b"h"), (b"Connection", b"upgrade"),
                                      (b"Upgrade", b"websocket")))),
        ("misc/upgrade-post", post_cl((b"Connection", b"Upgrade"), (b"Upgrade", b"h2c"))),
        ("misc/head", req(b"HEAD", b"/h")),
        ("misc/options-star", req(b"OPTIONS", b"*")),
        ("misc/connect", req(b"CONNECT", b"h:443", ((b"Host", b"h:443"),))),
        ("misc/trace", req(b"TRACE", b"/t")),
        ("misc/custom-method", req(b"PURGE", b"/t")),
        ("misc/delete-cl0", req(b"DELETE", b"/d", ((b"Host", b"h"), (b"Content-Length", b"0")))),
        ("misc/xff", req(headers=((b"Host", b"h"), (b"X-Forwarded-For", b"1.2.3.4"),
                                  (b"X-Forwarded-Proto", b"https")))),
        ("misc/envoy-headers", req(headers=((b"Host", b"h"), (b"x-envoy-original-path", b"/x"),
                                            (b"X-Request-Id", b"abc")))),
        ("misc/obs-text", req(headers=((b"Host", b"h"), (b"X-A", b"\xe9t\xe9")))),
        ("misc/empty-value", req(headers=((b"Host", b"h"), (b"X-A", b"")))),
        ("misc/many-headers", req(headers=((b"Host", b"h"),) +
                                  tuple((b"X-%d" % i, b"v%d" % i) for i in range(80)))),
        ("misc/long-header", req(headers=((b"Host", b"h"), (b"X-Long", b"l" * 20000)))),
        ("misc/keep-alive-header", req(headers=((b"Host", b"h"), (b"Keep-Alive", b"timeout=5"),
                                                (b"Proxy-Connection", b"keep-alive")))),
        ("misc/host-port", req(headers=((b"Host", b"h:8080"),))),
        ("misc/query", req(b"GET", b"/q?a=1&b=%20&c=/../x")),
        ("misc/ows", req(headers=((b"Host", b"h"), (b"X-A", b" \t v \t")))),
    ]


VALID = [
    req(),
    req(b"GET", b"/v?x=1", ((b"Host", b"h"), (b"User-Agent", b"t"), (b"Accept", b"*/*"))),
    post_cl(),
    post_te(),
    post_te(body=b"3;e=1\r\nabc\r\n4\r\ndefg\r\n0\r\nX-T: 1\r\n\r\n"),
    req(b"PUT", b"/u", ((b"Host", b"h"), (b"Content-Length", b"3"), (b"Connection",
                                                                       b"keep-alive")), b"xyz"),
]
MUTATION_BYTES = [b"\r", b"\n", b" ", b"\t", b":", b"\x00", b",", b"0", b"9", b"f", b";",
                  b"\x7f", b"\x80", b"%", b".", b"/", b"?", b"#", b"\r\n", b"\r\n\r\n"]


def mutate(rng, data):
    data = bytearray(data)
    for _ in range(rng.randint(1, 3)):
        op = rng.randrange(5)
        pos = rng.randrange(len(data) + 1)
        if op == 0 and pos < len(data):
            data[pos:pos + 1] = rng.choice(MUTATION_BYTES + [bytes([rng.randrange(256)])])
        elif op == 1:
            data[pos:pos] = rng.choice(MUTATION_BYTES)
        elif op == 2 and pos < len(data):
            del data[pos:pos + rng.randint(1, 3)]
        elif op == 3:
            lines = bytes(data).split(b"\r\n")
            k = rng.randrange(len(lines))
            lines.insert(k, lines[k])
            data = bytearray(b"\r\n".join(lines))
        elif pos < len(data):
            data[pos] = bytes([data[pos]]).swapcase()[0]
    return bytes(data)


def mutations(n=200):
    rng = random.Random(SEED)
    out, seen = [], set()
    while len(out) < n:
        base = rng.randrange(len(VALID))
        m = mutate(rng, VALID[base])
        if m in seen or m in VALID:
            continue
        seen.add(m)
        out.append((f"mutation/{len(out)}-of-valid{base}", m))
    return out


def corpus():
    out = (connection_names() + connection_multiple() + chunk_ext() + trailers() + chunk_size()
           + te_codings() + cl_variants() + obs_fold() + bare_cr_lf() + http10()
           + absolute_form() + dot_segments() + nul() + smuggling() + misc() + mutations())
    seen, unique = set(), []
    for name, data in out:
        if data not in seen:
            seen.add(data)
            unique.append((name, data))
    return unique


def pairs(n=80):
    rng = random.Random(SEED + 1)
    singles = [c for c in corpus() if not c[0].startswith("mutation/")]
    valid = [(f"valid{i}", v) for i, v in enumerate(VALID)]
    out = []
    for i in range(n):
        a = rng.choice(singles if i % 2 else valid)
        c = rng.choice(valid if i % 3 else singles)
        out.append((f"pipelined/{a[0]}+{c[0]}", a[1] + c[1]))
    return out
