"""Test servers on daemon threads that stop at once: `serve_forever` checks for `shutdown()` every
0.5 s by default, so each server's shutdown used to cost a test up to half a second."""

from __future__ import annotations

import socketserver
import threading

SHUTDOWN_POLL = 0.01  # seconds between a serving thread's checks for shutdown()


def serve_in_thread(server: socketserver.BaseServer) -> threading.Thread:
    """Serve `server` on a daemon thread that notices `shutdown()` within SHUTDOWN_POLL."""
    thread = threading.Thread(target=server.serve_forever, args=(SHUTDOWN_POLL,), daemon=True)
    thread.start()
    return thread
