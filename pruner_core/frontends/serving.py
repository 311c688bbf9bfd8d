"""Who the app serves, and so what a browser visitor may ask of the server. No heavy imports.

The app runs as its user's own process, but whoever reaches its port drives it. Two rules follow:

- Factory specs (``package.module:function``) import and call code: the app accepts one only from modules
  named at start-up (``$PRUNER_FACTORIES``, ``make run FACTORIES=mypkg.models``), never from a browser
  visitor's choice. The command line is its user's own and keeps accepting any.
- An app listening beyond loopback (``make run HOST=0.0.0.0``) is *shared*: "Path on this machine" is off,
  unless the server was started with one folder to serve (``$PRUNER_PATH_ROOT``, ``make run PATHS=DIR``);
  then only paths under that folder are read. Uploads have the smaller limit ``make run`` sets for sharing.

>>> Exposure("127.0.0.1").shared, Exposure("0.0.0.0").shared, Exposure(None).shared
(False, True, True)
>>> Exposure("0.0.0.0").paths_allowed
False
"""

from __future__ import annotations

import ipaddress
import os
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from pruner_core.errors import SpecError

FACTORIES_ENV = "PRUNER_FACTORIES"
PATH_ROOT_ENV = "PRUNER_PATH_ROOT"
SHARED_UPLOAD_MB = 200  # the most a shared app accepts in one upload, whatever the server's own limit


def is_loopback(address: str | None) -> bool:
    """True for an address only this machine can reach (``127.0.0.0/8``, ``::1``, ``localhost``).

    An empty or missing address means every interface (Streamlit's default), which is not loopback.
    """
    if not address:
        return False
    if address.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(address.strip().strip("[]")).is_loopback
    except ValueError:  # a host name: it may resolve to anything
        return False


def parse_modules(text: str | None) -> tuple[str, ...]:
    """Module names from a comma- or space-separated list (``"a.models, b"``), in order, without repeats.

    Raises:
        SpecError: a name that is not a dotted Python module name.
    """
    names: list[str] = []
    for raw in (text or "").replace(",", " ").split():
        if not all(part.isidentifier() for part in raw.split(".")):
            raise SpecError(f"'{raw}' in {FACTORIES_ENV} is not a module name; expected dotted names like mypkg.models")
        if raw not in names:
            names.append(raw)
    return tuple(names)


@dataclass(frozen=True)
class Exposure:
    """How far the app is exposed, and what follows for the pickers.

    Attributes:
        address: the address the server listens on (``None``/empty: every interface).
        factories: modules whose callables a factory spec may call (empty: none).
        path_root: the one folder "Path on this machine" may read when shared (``None``: paths off when shared).
        server_upload_mb: the server's own upload limit (Streamlit's ``server.maxUploadSize``).
    """

    address: str | None
    factories: tuple[str, ...] = ()
    path_root: Path | None = None
    server_upload_mb: int = SHARED_UPLOAD_MB

    @classmethod
    def from_env(cls, address: str | None, server_upload_mb: int = SHARED_UPLOAD_MB,
                 env: Mapping[str, str] | None = None) -> Exposure:
        """The exposure of a server listening on ``address``, with ``$PRUNER_FACTORIES`` and ``$PRUNER_PATH_ROOT``.

        Raises:
            SpecError: a bad module name, or a path root that is not a folder.
        """
        env = os.environ if env is None else env
        root_text = (env.get(PATH_ROOT_ENV) or "").strip()
        root = None
        if root_text:
            root = Path(root_text).expanduser().resolve()
            if not root.is_dir():
                raise SpecError(f"{PATH_ROOT_ENV}='{root_text}' is not a folder; name the folder the app may read")
        return cls(address, parse_modules(env.get(FACTORIES_ENV)), root, int(server_upload_mb))

    @property
    def shared(self) -> bool:
        """True when other machines can reach the server."""
        return not is_loopback(self.address)

    @property
    def upload_mb(self) -> int:
        """The largest upload accepted, in MB: the server's limit, and at most :data:`SHARED_UPLOAD_MB` when shared."""
        return min(self.server_upload_mb, SHARED_UPLOAD_MB) if self.shared else self.server_upload_mb

    def check_upload(self, name: str, size: int) -> None:
        """Refuse an upload larger than :attr:`upload_mb`.

        Raises:
            SpecError: naming the file, its size and the limit.
        """
        if size > self.upload_mb * 1024 * 1024:
            raise SpecError(f"'{name}' is {size / 2**20:,.1f} MB; this app accepts uploads up to {self.upload_mb} MB")

    @property
    def paths_allowed(self) -> bool:
        """Whether "Path on this machine" is offered: always on loopback, only with a path root when shared."""
        return not self.shared or self.path_root is not None

    def resolve_path(self, text: str) -> str:
        """The file a visitor's path names, checked against this exposure.

        On loopback the path is taken as typed. When shared, it must lie under :attr:`path_root` (a relative path
        is taken relative to it; ``..`` and symbolic links are resolved first, so neither leads out of it).

        Raises:
            SpecError: paths are off, or the path leads outside the shared folder.
        """
        text = text.strip()
        if not self.shared:
            return text
        if self.path_root is None:
            raise SpecError(
                "paths on the server are off: this app is shared beyond this machine; upload the file instead, or "
                f"start the app with a folder to serve (make run PATHS=DIR, or {PATH_ROOT_ENV}=DIR)"
            )
        path = (self.path_root / Path(text).expanduser()).resolve()
        if not path.is_relative_to(self.path_root):
            raise SpecError(f"'{text}' is outside the folder this app serves; give a path under {self.path_root}")
        return str(path)


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now (for a server started next: the browser tests, the benchmarks)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def answers_healthy(url: str) -> bool:
    """Whether Streamlit's health endpoint at ``url`` answers "ok" now."""
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return r.status == 200 and r.read().decode().strip() == "ok"
    except (urllib.error.URLError, OSError):
        return False


def stop_server(proc: subprocess.Popen, timeout: float = 15) -> None:
    """Stop a server process started for a while: terminate, and kill it if it has not ended within ``timeout``."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=timeout)


def wait_until_healthy(proc: subprocess.Popen, port: int, timeout: float) -> str | None:
    """Wait until the Streamlit server ``proc`` answers on ``port``: None once it does, else why not (it exited, or
    did not answer within ``timeout`` seconds)."""
    health = f"http://127.0.0.1:{port}/_stcore/health"
    deadline = time.monotonic() + timeout
    while not answers_healthy(health):
        if proc.poll() is not None:
            return f"exited with code {proc.returncode}"
        if time.monotonic() > deadline:
            return f"did not answer 'ok' at {health} within {timeout} s"
        time.sleep(0.1)
    return None
