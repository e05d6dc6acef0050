"""Test servers on daemon threads that stop at once: `serve_forever` checks for `shutdown()` every
0.5 s by default, so each server's shutdown used to cost a test up to half a second."""

from __future__ import annotations

import socketserver
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

SHUTDOWN_POLL = 0.01  # seconds between a serving thread's checks for shutdown()


def serve_in_thread(server: socketserver.BaseServer) -> threading.Thread:
    """Serve `server` on a daemon thread that notices `shutdown()` within SHUTDOWN_POLL."""
    thread = threading.Thread(target=server.serve_forever, args=(SHUTDOWN_POLL,), daemon=True)
    thread.start()
    return thread


def serve_every_method(handle: Callable[[BaseHTTPRequestHandler], None]) -> ThreadingHTTPServer:
    """A quiet HTTP/1.1 server on a free loopback port handing every request, whatever its method, to `handle`."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:
            return None

        def do_GET(self) -> None:
            handle(self)

        do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = do_GET

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    serve_in_thread(server)
    return server
