"""What the policy peers share: reading the x-auth-* controls of a request, the JSON-lines record
file, bounded sleeps, and the process options (TLS, record file) of every server."""

import base64
import json
import threading
import time

# The longest x-auth-sleep-ms / sleep-<ms> honoured, so a typo cannot hang a test.
MAX_SLEEP_MS = 30000


def items(values):
    """The "name=value" items of header <values> (a list of strings; each may be a comma list),
    as (name, value) pairs; an item without "=" has an empty value."""
    out = []
    for v in values:
        for item in v.split(","):
            item = item.strip()
            if not item:
                continue
            name, _, value = item.partition("=")
            out.append((name.strip(), value.strip()))
    return out


def names(values):
    """The names of a comma list (or several): "a, b" -> ["a", "b"]."""
    return [n.strip() for v in values for n in v.split(",") if n.strip()]


def sleep_ms(text):
    """The milliseconds of an x-auth-sleep-ms value (0 when absent or not a number)."""
    try:
        return max(0, min(int(str(text).strip()), MAX_SLEEP_MS))
    except (TypeError, ValueError):
        return 0


def sleep_while(active, ms):
    """Sleeps <ms> milliseconds, returning early (False) when <active>() turns false."""
    end = time.monotonic() + ms / 1000.0
    while active():
        left = end - time.monotonic()
        if left <= 0:
            return True
        time.sleep(min(left, 0.01))
    return False


def b64(data):
    return base64.b64encode(bytes(data)).decode()


def unb64(text):
    return base64.b64decode(text or "")


class Recorder:
    """Appends one JSON object per line to <path> (None: records nothing), whole lines under a
    lock, flushed at once, so a reader in another process sees complete lines."""

    def __init__(self, path):
        self.path = path
        self.lock = threading.Lock()
        self.seq = 0

    def write(self, obj):
        if self.path is None:
            return
        with self.lock:
            self.seq += 1
            obj = dict(obj, seq=self.seq, t=time.time())
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(json.dumps(obj, sort_keys=True) + "\n")


def read_records(path):
    """The complete lines of a record file as dicts (a line being written is left out)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    out = []
    for line in text.split("\n")[:-1]:
        if line:
            out.append(json.loads(line))
    return out


def add_server_args(ap):
    """The options every policy peer takes."""
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--tls-cert")
    ap.add_argument("--tls-key")
    ap.add_argument("--client-ca", help="require client certificates signed by this CA")
    ap.add_argument("--record", help="append one JSON line per request to this file")


def check_server_args(ap, args):
    if bool(args.tls_cert) != bool(args.tls_key):
        ap.error("--tls-cert and --tls-key go together")
    if args.client_ca and not args.tls_cert:
        ap.error("--client-ca needs --tls-cert and --tls-key")
