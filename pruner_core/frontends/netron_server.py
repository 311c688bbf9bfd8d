"""Netron views of model files: one local HTTP server per file, on 127.0.0.1, stopped when no longer needed.

Netron's Python package (``netron``) is a small HTTP server plus the web app it serves from its own package
folder, so a view works offline (nothing is fetched from a CDN). Its own :func:`netron.start` keeps the file to
serve in a class attribute shared by every server of the process (two files served at once would both show
the last one) and probes ports before binding them (a race). This module therefore runs netron's request
handler in its own threaded server per file, in this process:

- :func:`serve` starts (or returns the running) server of a file; asking again for the same file returns the
  same server, unless the file changed on disk (then the old server is stopped and a new one started).
- The port is bound atomically: a free one chosen by the OS, or the one asked for if it is free, else another.
- :func:`release` drops an owner's claim (a browser session, say) on servers it no longer shows and stops the
  servers nobody claims any more; :func:`stop` and :func:`stop_all` stop servers outright, and every server
  is stopped when the interpreter exits.

>>> view = serve("runs/.cache/original-1234/model.onnx", owner="session-1")  # doctest: +SKIP
>>> view.url  # doctest: +SKIP
'http://127.0.0.1:41237'
>>> release("session-1")  # doctest: +SKIP
"""

from __future__ import annotations

import atexit
import errno
import functools
import http.server
import logging
import socketserver
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path

from pruner_core.config.text import format_bytes
from pruner_core.errors import PrunerError

HOST = "127.0.0.1"
MAX_SERVERS = 16  # beyond this many, the servers asked for longest ago (and claimed by nobody) are stopped first

logger = logging.getLogger(__name__)


class _Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    """A threaded HTTP server whose request threads never hold up shutdown."""

    daemon_threads = True
    block_on_close = False


@dataclass(eq=False)
class NetronServer:
    """A running (or stopped) Netron view of one file. ``owners`` are those who claim it (see :func:`release`)."""

    path: Path
    mtime_ns: int
    host: str
    port: int
    owners: set[str] = field(default_factory=set)
    used: float = field(default_factory=time.monotonic)
    _httpd: _Server | None = field(default=None, repr=False)
    _thread: threading.Thread | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT``: where Netron shows the file."""
        return f"http://{self.host}:{self.port}"

    @property
    def address(self) -> tuple[str, int]:
        return self.host, self.port

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def stop(self) -> None:
        """Stop serving and free the port (waits for the serving thread to end). Stopping twice is harmless."""
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        httpd.shutdown()
        httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        logger.info("stopped Netron for %s at %s", self.path, self.url)


_lock = threading.RLock()
_servers: dict[Path, NetronServer] = {}


def serve(path: str | Path, *, port: int | None = None, host: str = HOST, owner: str | None = None) -> NetronServer:
    """The Netron server of ``path``, started if none runs for the file as it is now on disk.

    Args:
        path: the model file (ONNX, or anything else Netron reads).
        port: the port to use if it is free; taken (or None), the OS picks a free one. It is only a preference:
            a file already served keeps its server and port.
        host: the address to listen on (loopback by default: the view is for this machine only).
        owner: who claims the server (e.g. a browser session), so that :func:`release` can stop it once no
            owner shows it any more. Servers without owners run until :func:`stop` or :func:`stop_all`.

    Raises:
        PrunerError: no such file, or no server could be started (the reason is named).
    """
    file = Path(path).resolve()
    try:
        mtime_ns = file.stat().st_mtime_ns
    except OSError as e:
        raise PrunerError(f"cannot show '{path}' in Netron: {e.strerror or e}") from e
    if not file.is_file():
        raise PrunerError(f"cannot show '{path}' in Netron: it is not a file")
    with _lock:
        server = _servers.get(file)
        if server is not None and (server.mtime_ns != mtime_ns or not server.alive or server.host != host):
            server.stop()  # the file changed on disk (or the server died): a fresh server, a fresh URL
            del _servers[file]
            server = None
        if server is None:
            server = _start(file, mtime_ns, host, port)
            _servers[file] = server
        if owner is not None:
            server.owners.add(owner)
        server.used = time.monotonic()
        _evict()
        return server


def release(owner: str, keep: list[str | Path] | tuple[str | Path, ...] = ()) -> list[Path]:
    """Drop ``owner``'s claim on every server but those of ``keep``; stop the servers no owner claims any more.

    Returns:
        The files whose servers were stopped.
    """
    kept = {Path(p).resolve() for p in keep}
    stopped = []
    with _lock:
        for file, server in list(_servers.items()):
            if file in kept or owner not in server.owners:
                continue
            server.owners.discard(owner)
            if not server.owners:
                server.stop()
                del _servers[file]
                stopped.append(file)
    return stopped


def stop(path: str | Path) -> bool:
    """Stop the server of ``path`` whoever claims it. Returns whether one was running."""
    with _lock:
        server = _servers.pop(Path(path).resolve(), None)
    if server is None:
        return False
    server.stop()
    return True


def stop_all() -> int:
    """Stop every server started here (also run when the interpreter exits). Returns how many were running."""
    with _lock:
        servers = list(_servers.values())
        _servers.clear()
    for server in servers:
        server.stop()
    return len(servers)


def running() -> list[NetronServer]:
    """The servers running now, in the order they were started."""
    with _lock:
        return [s for s in _servers.values() if s.alive]


def server_of(path: str | Path) -> NetronServer | None:
    """The running server of ``path``, if any (whatever the file's state on disk)."""
    with _lock:
        return _servers.get(Path(path).resolve())


@dataclass(frozen=True)
class OnnxFile:
    """What a caption says about an ONNX file: its name, bytes on disk and default-domain opset."""

    path: Path
    bytes: int
    opset: int | None

    @property
    def caption(self) -> str:
        """``model.onnx, 1.7 MB, opset 17``."""
        opset = f", opset {self.opset}" if self.opset is not None else ""
        return f"{self.path.name}, {format_bytes(self.bytes)}{opset}"


def onnx_file(path: str | Path) -> OnnxFile:
    """Size on disk and opset of an ONNX file (read once per file version).

    Raises:
        PrunerError: no such file, or it is not ONNX.
    """
    path = Path(path)
    try:
        stat = path.stat()
    except OSError as e:
        raise PrunerError(f"cannot read '{path}': {e.strerror or e}") from e
    return OnnxFile(path, stat.st_size, _opset(str(path.resolve()), stat.st_size, stat.st_mtime_ns))


# --- internals -----------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=64)
def _opset(path: str, size: int, mtime_ns: int) -> int | None:
    import onnx

    try:
        model = onnx.load(path, load_external_data=False)
    except Exception as e:  # protobuf raises several kinds on a file that is not ONNX
        raise PrunerError(f"'{path}' is not an ONNX model: {type(e).__name__}: {e}") from e
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)


def _start(file: Path, mtime_ns: int, host: str, port: int | None) -> NetronServer:
    handler = _handler(file)
    httpd = None
    if port:
        try:
            httpd = _Server((host, port), handler)
        except OSError as e:
            if e.errno not in (errno.EADDRINUSE, errno.EACCES):
                raise PrunerError(f"cannot start Netron on {host}:{port}: {e.strerror or e}") from e
            logger.info("port %s:%d is taken; Netron picks another", host, port)
    if httpd is None:
        try:
            httpd = _Server((host, 0), handler)  # the OS binds a free port: nobody can take it between checks
        except OSError as e:
            raise PrunerError(f"cannot start Netron on {host}: {e.strerror or e}") from e
    bound = httpd.server_address[1]
    thread = threading.Thread(
        target=httpd.serve_forever, kwargs={"poll_interval": 0.25}, name=f"netron:{bound}", daemon=True,
    )
    thread.start()
    logger.info("Netron serves %s at http://%s:%d", file, host, bound)
    return NetronServer(file, mtime_ns, host, bound, _httpd=httpd, _thread=thread)


# Netron's web app reaches outside: it asks ipinfo.io where the visitor is (for a cookie banner), sends Google
# Analytics beacons, and past 180 days from its release nags to update and opens github.com. None of that may leave
# this machine: the scripts are served with those paths turned off (an e2e test records every request).
OFFLINE_PATCHES: dict[str, list[tuple[str, str]]] = {
    "/browser.js": [
        ("if (days > 180) {", "if (false) {"),
        ("if (this._getCookie('consent') || this._getCookie('_ga')) {", "if (true) {"),
        ("const telemetry = async () => {\n            if (this._environment.packaged) {",
         "const telemetry = async () => {\n            if (false) {"),
    ],
    "/base.js": [("this._navigator.sendBeacon(url, body);", "void url, void body;")],
}


@functools.cache
def offline_script(path: str) -> bytes:
    """Netron's script at ``path`` with its outside requests turned off (see ``OFFLINE_PATCHES``)."""
    import netron

    text = (Path(netron.__file__).parent / path.lstrip("/")).read_text(encoding="utf-8")
    for old, new in OFFLINE_PATCHES[path]:
        if old not in text:
            logger.warning("netron %s: %s no longer holds %r; its offline patch did not apply", netron.__version__,
                           path, old[:60])
        text = text.replace(old, new)
    return text.encode("utf-8")


def _handler(file: Path) -> type:
    """Netron's request handler bound to ``file``: a subclass of its own, so each server serves its own file, and
    serves Netron's scripts without their outside requests."""
    try:
        from netron import server as netron_server

        base, content = netron_server._HTTPRequestHandler, netron_server._ContentProvider(None, str(file), str(file), file.name)
    except (ImportError, AttributeError, TypeError) as e:
        raise PrunerError(f"the installed netron package cannot serve files here ({type(e).__name__}: {e})") from e

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        path = urllib.parse.urlparse(self.path).path
        if path in OFFLINE_PATCHES:
            self._write(200, "text/javascript", offline_script(path))
        else:
            base.do_GET(self)

    return type("NetronFileHandler", (base,), {"content": content, "do_GET": do_GET})


def _evict() -> None:
    """Keep at most MAX_SERVERS running: stop unclaimed servers first, then the ones asked for longest ago."""
    excess = len(_servers) - MAX_SERVERS
    if excess <= 0:
        return
    for file, server in sorted(_servers.items(), key=lambda kv: (bool(kv[1].owners), kv[1].used))[:excess]:
        server.stop()
        del _servers[file]


atexit.register(stop_all)
