"""A registry that answers in bad faith, for tests: one function decides every answer, every request is recorded.

    with HostileServer(reply(401, {"WWW-Authenticate": 'Basic realm="r"'})) as registry:
        ...  # talk to registry.host, then look at registry.seen

`address` picks the loopback address (127.0.0.2 is another host name as far as a client can tell);
`answer` may be replaced while the server runs (two servers redirecting to each other need both addresses).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType

from .serving import serve_in_thread

Answer = Callable[[BaseHTTPRequestHandler], None]


@dataclass(frozen=True)
class Seen:
    """One request as it arrived: the method, the target exactly as sent (absolute through a proxy), the headers."""

    method: str
    target: str
    headers: dict[str, str]

    def __str__(self) -> str:
        return f"{self.method} {self.target} {self.headers}"


def reply(status: int, headers: dict[str, str] | None = None, body: bytes = b"") -> Answer:
    """An answer with a Content-Length; `{host}` in a header value becomes the Host the client asked for."""

    def answer(req: BaseHTTPRequestHandler) -> None:
        req.send_response(status)
        for key, value in (headers or {}).items():
            req.send_header(key, value.replace("{host}", req.headers["Host"]))
        req.send_header("Content-Length", str(len(body)))
        req.end_headers()
        if req.command != "HEAD":
            req.wfile.write(body)

    return answer


class HostileServer:
    """An HTTP server on a free loopback port, answering every method with `answer` and recording each request."""

    def __init__(self, answer: Answer, address: str = "127.0.0.1") -> None:
        self.answer = answer
        self.seen: list[Seen] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                return None

            def handle_one_request(self) -> None:
                try:
                    super().handle_one_request()
                except OSError:  # the client hung up on a trickling answer: expected here
                    self.close_connection = True

            def answer(self) -> None:
                length = self.headers.get("Content-Length", "")
                if length.isdigit():
                    self.rfile.read(int(length))
                owner.seen.append(Seen(self.command, self.path, dict(self.headers.items())))
                owner.answer(self)

            do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = answer

        self._httpd = ThreadingHTTPServer((address, 0), Handler)
        self.host = f"{address}:{self._httpd.server_address[1]}"
        self._thread = serve_in_thread(self._httpd)

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join()

    def __enter__(self) -> HostileServer:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()
