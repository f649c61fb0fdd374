#!/usr/bin/env python3
"""Fault-injecting HTTP proxy for the hybrid (issue 10) tests. Python 3 stdlib only.

    fault_proxy.py --listen-port 0 --port-file F --upstream http://127.0.0.1:P --fault MODE
                   [--delay-ms N] [--log-bodies FILE] [--log-connections FILE]
                   [--fault-count N] [--max-seconds S]

Writes the port it listens on to F (atomically: a temporary file renamed), then
serves until killed or until --max-seconds (default 300) have passed.

MODE
  pass        forward requests unchanged; responses too (SSE chunk by chunk)
  refuse      listen on nothing: F gets the port of a socket that was bound and
              closed, so connections to it are refused
  delay       sleep --delay-ms before answering, then forward as "pass"
  http500     answer 500 with a JSON error body
  http429     answer 429 (Retry-After: 1) with a JSON error body
  garbage     answer 200 application/json with a body that is not JSON
  truncated   forward, but cut the upstream response in the middle: a whole
              response promises its full Content-Length and the connection
              closes after half of it; a streamed one stops mid-way without
              the closing chunk
  cut_stream  forward; a streamed (SSE) response is cut (connection closed,
              no closing chunk) right after its 2nd event; a whole response
              is forwarded unchanged

--fault-count N applies the fault to the first N requests only; later ones are
forwarded as "pass" (for circuit-breaker recovery tests). Default: all.
--log-bodies FILE appends one JSON line per request received, in every mode,
before the fault: the body itself re-serialized on one line when it is JSON
(non-ASCII kept as UTF-8 so that a plain substring search finds values), else
{"raw_body": "..."}. --log-connections FILE appends {"event": "connect"} for
every TCP connection accepted (to show that none was attempted).
"""

import argparse
import http.client
import json
import os
import socket
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MODES = ("pass", "refuse", "delay", "http500", "http429", "garbage", "truncated", "cut_stream")
HOP_BY_HOP = {
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailers",
    "transfer-encoding", "upgrade", "host", "content-length", "expect",
}
MAX_BODY = 64 << 20

_log_lock = threading.Lock()
_count_lock = threading.Lock()


def log(msg):
    sys.stderr.write("fault_proxy: %s\n" % msg)
    sys.stderr.flush()


def append_line(path, obj):
    line = json.dumps(obj, ensure_ascii=False, separators=(",", ":")) + "\n"
    data = line.encode("utf-8")
    with _log_lock:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)


def write_port_file(path, port):
    tmp = "%s.tmp.%d" % (path, os.getpid())
    with open(tmp, "w") as f:
        f.write("%d\n" % port)
    os.replace(tmp, path)


class Proxy(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 64

    def __init__(self, addr, handler, opts):
        super().__init__(addr, handler)
        self.opts = opts
        self.n_requests = 0
        up = urllib.parse.urlsplit(opts.upstream) if opts.upstream else None
        if up is not None and up.scheme not in ("http", "https"):
            raise SystemExit("fault_proxy: --upstream must be http:// or https://")
        self.up = up

    def verify_request(self, request, client_address):
        if self.opts.log_connections:
            append_line(self.opts.log_connections,
                        {"event": "connect", "peer": "%s:%d" % client_address[:2],
                         "time": time.time()})
        return True

    def handle_error(self, request, client_address):
        exc = sys.exc_info()[1]
        if isinstance(exc, (BrokenPipeError, ConnectionResetError, ConnectionAbortedError,
                            socket.timeout)):
            return  # the client went away: expected with faults
        super().handle_error(request, client_address)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "fault_proxy/1"
    timeout = 120  # idle keep-alive connections do not pin threads forever

    def log_message(self, fmt, *args):
        if not self.server.opts.quiet:
            log("%s %s" % (self.address_string(), fmt % args))

    # ---- request body: Content-Length or chunked ----
    def read_body(self):
        te = (self.headers.get("Transfer-Encoding") or "").lower()
        if "chunked" in te:
            out = bytearray()
            while True:
                line = self.rfile.readline(65537)
                if not line:
                    raise ConnectionError("request body cut")
                size = int(line.split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while True:  # trailers up to the blank line
                        t = self.rfile.readline(65537)
                        if not t or t in (b"\r\n", b"\n"):
                            break
                    return bytes(out)
                if len(out) + size > MAX_BODY:
                    raise ValueError("request body too large")
                out += self.rfile.read(size)
                self.rfile.readline(3)
        n = int(self.headers.get("Content-Length") or 0)
        if n < 0 or n > MAX_BODY:
            raise ValueError("bad Content-Length")
        return self.rfile.read(n) if n else b""

    def log_body(self, body):
        path = self.server.opts.log_bodies
        if not path:
            return
        try:
            obj = json.loads(body.decode("utf-8")) if body else {"raw_body": ""}
        except (UnicodeDecodeError, ValueError):
            obj = {"raw_body": body.decode("utf-8", "replace")}
        append_line(path, obj)

    # ---- answers ----
    def send_simple(self, code, body, ctype="application/json", extra=None):
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)
        self.wfile.flush()

    def cut(self):
        """Closes the connection abruptly (what the client sees as a cut)."""
        self.close_connection = True
        try:
            self.wfile.flush()
        except OSError:
            pass
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def do_GET(self):
        self.handle_any()

    def do_POST(self):
        self.handle_any()

    def do_PUT(self):
        self.handle_any()

    def do_DELETE(self):
        self.handle_any()

    def handle_any(self):
        opts = self.server.opts
        try:
            body = self.read_body()
        except (ValueError, ConnectionError) as e:
            self.send_simple(400, json.dumps({"error": {"message": str(e)}}).encode())
            self.close_connection = True
            return
        self.log_body(body)
        with _count_lock:
            self.server.n_requests += 1
            nth = self.server.n_requests
        mode = opts.fault
        if opts.fault_count >= 0 and nth > opts.fault_count:
            mode = "pass"
        if mode == "http500":
            self.send_simple(500, b'{"error":{"message":"injected 500","type":"server_error"}}')
            return
        if mode == "http429":
            self.send_simple(429, b'{"error":{"message":"injected 429","type":"rate_limit"}}',
                             extra={"Retry-After": "1"})
            return
        if mode == "garbage":
            self.send_simple(200, b"<html>this is {not json at all\x00\xff</html>")
            return
        if mode == "delay":
            time.sleep(opts.delay_ms / 1000.0)
        self.forward(body, mode)

    def forward(self, body, mode):
        up = self.server.up
        if up is None:
            self.send_simple(502, b'{"error":{"message":"no upstream"}}')
            return
        port = up.port or (443 if up.scheme == "https" else 80)
        if up.scheme == "https":
            import ssl
            conn = http.client.HTTPSConnection(up.hostname, port, timeout=300,
                                               context=ssl._create_unverified_context())
        else:
            conn = http.client.HTTPConnection(up.hostname, port, timeout=300)
        path = (up.path.rstrip("/") + self.path) if up.path not in ("", "/") else self.path
        headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
        headers["Host"] = up.netloc
        headers["Content-Length"] = str(len(body))
        headers["Connection"] = "close"
        try:
            conn.request(self.command, path, body=body if body or self.command != "GET" else None,
                         headers=headers)
            resp = conn.getresponse()
        except OSError as e:
            conn.close()
            self.send_simple(502, json.dumps({"error": {"message": "upstream: %s" % e}}).encode())
            return
        try:
            self.relay(resp, mode)
        finally:
            conn.close()

    def relay(self, resp, mode):
        ctype = resp.getheader("Content-Type", "") or ""
        length = resp.getheader("Content-Length")
        streamed = "text/event-stream" in ctype.lower() or length is None
        self.send_response(resp.status, resp.reason)
        for k, v in resp.getheaders():
            if k.lower() not in HOP_BY_HOP and k.lower() not in ("date", "server"):
                self.send_header(k, v)
        if not streamed:
            data = resp.read()
            if mode == "truncated":
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data[: max(1, len(data) // 2)])
                self.cut()
                return
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            self.wfile.flush()
            return
        # streamed: chunked to the client, as it arrives
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        self.wfile.flush()
        pending = b""  # for counting SSE events
        events = 0
        sent = 0
        half_after = 200  # "truncated" on a stream: stop after about this many bytes
        while True:
            try:
                chunk = resp.read1(65536)
            except (http.client.IncompleteRead, OSError):
                self.cut()  # upstream cut: pass the cut on
                return
            if not chunk:
                break
            if mode == "cut_stream":
                pending += chunk
                out = b""
                while events < 2:
                    i = min([x for x in (pending.find(b"\n\n"), pending.find(b"\r\n\r\n"))
                             if x >= 0], default=-1)
                    if i < 0:
                        break
                    end = i + (4 if pending[i:i + 4] == b"\r\n\r\n" else 2)
                    out += pending[:end]
                    pending = pending[end:]
                    events += 1
                if out:
                    self.write_chunk(out)
                if events >= 2:
                    self.cut()
                    return
                continue
            if mode == "truncated" and sent + len(chunk) >= half_after:
                self.write_chunk(chunk[: max(1, half_after - sent)])
                self.cut()
                return
            self.write_chunk(chunk)
            sent += len(chunk)
        if mode == "cut_stream" and pending:
            self.write_chunk(pending)
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def write_chunk(self, data):
        self.wfile.write(b"%x\r\n" % len(data) + data + b"\r\n")
        self.wfile.flush()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__.split("\n\n", 2)[2])
    ap.add_argument("--listen-port", type=int, default=0, help="port to listen on (0: any free)")
    ap.add_argument("--listen-host", default="127.0.0.1")
    ap.add_argument("--port-file", required=True, help="where the listening port is written")
    ap.add_argument("--upstream", default="", help="http://HOST:PORT[/prefix] to forward to")
    ap.add_argument("--fault", choices=MODES, default="pass")
    ap.add_argument("--delay-ms", type=float, default=1000.0)
    ap.add_argument("--fault-count", type=int, default=-1,
                    help="fault only the first N requests (default: all)")
    ap.add_argument("--log-bodies", default="", help="append request bodies as JSON lines")
    ap.add_argument("--log-connections", default="", help="append one line per connection")
    ap.add_argument("--max-seconds", type=float, default=300.0, help="exit after this long")
    ap.add_argument("--quiet", action="store_true", help="no per-request log on stderr")
    opts = ap.parse_args()
    if opts.fault not in ("refuse",) and not opts.upstream and opts.fault in (
            "pass", "delay", "truncated", "cut_stream"):
        ap.error("--upstream is required for --fault %s" % opts.fault)
    if opts.delay_ms < 0 or opts.max_seconds <= 0:
        ap.error("--delay-ms must be >= 0 and --max-seconds > 0")

    def expire():
        log("--max-seconds %g reached, exiting" % opts.max_seconds)
        sys.stderr.flush()
        os._exit(0)

    timer = threading.Timer(opts.max_seconds, expire)
    timer.daemon = True
    timer.start()

    if opts.fault == "refuse":
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.bind((opts.listen_host, 0))
        port = s.getsockname()[1]
        s.close()  # bound, never listened: connections to it are refused
        write_port_file(opts.port_file, port)
        log("refuse: port %d has no listener" % port)
        while True:
            time.sleep(3600)

    srv = Proxy((opts.listen_host, opts.listen_port), Handler, opts)
    port = srv.server_address[1]
    write_port_file(opts.port_file, port)
    log("listening on %s:%d, fault %s, upstream %s" % (opts.listen_host, port, opts.fault,
                                                        opts.upstream or "-"))
    try:
        srv.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        srv.server_close()


if __name__ == "__main__":
    main()
