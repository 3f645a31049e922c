"""Run a real Kannel (bearerbox + smsbox) against a test SMPP SMSC on loopback for tests."""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from string import Template
from typing import Any

import pytest

from tests.support.live import require

# This module shares its name with the folder beside it holding the config template and the test
# SMSC; a module with __path__ is treated as a package, so `tests.support.kannel.smsc` imports.
__path__ = [str(Path(__file__).with_suffix(""))]

from tests.support.kannel.smsc import TestSmsc

__all__ = ["KannelError", "KannelProcess", "KannelSettings", "TestSmsc", "make_kannel_fixture", "require_kannel"]

TEMPLATE = Path(__file__).with_suffix("") / "kannel.conf.template"
SEARCH_DIRS = ("/usr/sbin", "/usr/bin", "/usr/local/sbin", "/usr/local/bin")
# Ready in a second or two; generous because a shared CI machine can stall a start for many seconds.
READY_TIMEOUT = 60.0
STOP_GRACE = 3.0
# If the test process is killed (CI timeout, Ctrl-C twice), the kernel sends the boxes SIGTERM
# instead of leaving them holding ports; util-linux's setpriv sets that up without preexec_fn.
_SETPRIV = shutil.which("setpriv")
_DIE_WITH_PARENT = [_SETPRIV, "--pdeathsig", "TERM"] if _SETPRIV else []


class KannelError(RuntimeError):
    """Kannel did not start or stop as expected; the message carries the tail of its logs."""


def find_binary(name: str) -> str | None:
    """Locate a Kannel box: PATH first, then the sbin folders a non-root PATH lacks."""
    found = shutil.which(name)
    if found:
        return found
    for folder in SEARCH_DIRS:
        candidate = Path(folder) / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return None


def require_kannel() -> tuple[str, str]:
    """Return the bearerbox and smsbox paths, or skip the calling test with the fix to apply."""
    bearerbox, smsbox = find_binary("bearerbox"), find_binary("smsbox")
    if bearerbox is None or smsbox is None:
        require(
            False,
            "Kannel is not installed (bearerbox/smsbox not found); "
            "run `bash .ci/install-kannel.sh` to install Debian's kannel package",
        )
    return bearerbox, smsbox


def free_port() -> int:
    """A loopback port free right now (bind to 0); a tiny race with other processes remains."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class KannelSettings:
    """What a test may tune; the defaults suit functional tests."""

    username: str = "tester"
    password: str = "sendsms-secret"
    mo_url: str | None = None  # where smsbox forwards incoming SMS (our endpoint)
    mo_secret: str = "mo-shared-secret"  # appended to mo_url as `secret=`
    log_level: int = 1  # 0 debug, 1 info, 2 warning; debug logging costs throughput
    outgoing_queue_limit: int = -1  # -1: unlimited, Kannel's default
    max_pending_submits: int = 10  # Kannel's default SMPP window
    smsc_throughput: int = 0  # 0: no rate limit on the SMPP link
    max_segments: int = 10


def mo_url_with_placeholders(base: str, secret: str) -> str:
    """The sms-service get-url: our URL plus Kannel's escapes for sender, receiver and text.

    %p sender, %P receiver (short number), %a the text (recoded to UTF-8 by mo-recode),
    %I Kannel's message id, %t time of receipt. Kannel URL-encodes each escape's value.
    """
    separator = "&" if urllib.parse.urlsplit(base).query else "?"
    query = f"from=%p&to=%P&text=%a&id=%I&at=%t&secret={urllib.parse.quote(secret, safe='')}"
    return f"{base}{separator}{query}"


class KannelProcess:
    """A bearerbox and an smsbox sharing one kannel.conf in `workdir`, talking to `smsc`."""

    def __init__(
        self,
        workdir: Path,
        smsc: TestSmsc,
        settings: KannelSettings | None = None,
        binaries: tuple[str, str] | None = None,
    ) -> None:
        self.workdir = workdir
        self.smsc = smsc
        self.settings = settings or KannelSettings()
        self.bearerbox_bin, self.smsbox_bin = binaries or require_kannel()
        self.admin_password = secrets.token_hex(8)
        self.admin_port, self.smsbox_port, self.sendsms_port = free_port(), free_port(), free_port()
        self.config_path = workdir / "kannel.conf"
        self._bearerbox: subprocess.Popen[bytes] | None = None
        self._smsbox: subprocess.Popen[bytes] | None = None

    @property
    def sendsms_url(self) -> str:
        return f"http://127.0.0.1:{self.sendsms_port}/cgi-bin/sendsms"

    @property
    def admin_url(self) -> str:
        return f"http://127.0.0.1:{self.admin_port}"

    @property
    def is_running(self) -> bool:
        return all(p is not None and p.poll() is None for p in (self._bearerbox, self._smsbox))

    def write_config(self) -> None:
        (self.workdir / "store").mkdir(exist_ok=True)
        s = self.settings
        # Without an endpoint the service still needs a body; max-messages = 0 keeps it unsent.
        service = f'get-url = "{mo_url_with_placeholders(s.mo_url, s.mo_secret)}"' if s.mo_url else 'text = ""'
        self.config_path.write_text(
            Template(TEMPLATE.read_text()).substitute(
                workdir=self.workdir,
                admin_port=self.admin_port,
                admin_password=self.admin_password,
                smsbox_port=self.smsbox_port,
                sendsms_port=self.sendsms_port,
                smsc_port=self.smsc.port,
                smsc_username=self.smsc.system_id,
                smsc_password=self.smsc.password,
                log_level=s.log_level,
                outgoing_queue_limit=s.outgoing_queue_limit,
                max_pending_submits=s.max_pending_submits,
                smsc_throughput=s.smsc_throughput,
                username=s.username,
                password=s.password,
                max_segments=s.max_segments,
                service_url_line=service,
            )
        )

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self, timeout: float = READY_TIMEOUT) -> None:
        """Start both boxes and return once the SMPP link is up and sendsms answers."""
        deadline = time.monotonic() + timeout
        self.write_config()
        if self._smsbox is not None and self._smsbox.poll() is not None:
            self._smsbox = None  # it died (for instance with its bearerbox): start a new one
        if self._bearerbox is None or self._bearerbox.poll() is not None:
            self._bearerbox = self._spawn(self.bearerbox_bin, "bearerbox")
        # smsbox exits at once if bearerbox is not listening yet, so wait for its admin page first.
        self._wait(lambda: self.status_text() is not None, deadline, "bearerbox admin port")
        self._start_smsbox()
        self._wait(self._is_ready, deadline, "SMPP link online and smsbox connected")
        self._wait(lambda: _port_open(self.sendsms_port), deadline, "smsbox sendsms port")

    def _start_smsbox(self) -> None:
        if self._smsbox is None or self._smsbox.poll() is not None:
            self._smsbox = self._spawn(self.smsbox_bin, "smsbox")

    def stop(self) -> None:
        """Stop both boxes (the gateway is down: sendsms refuses connections)."""
        # bearerbox first: stopped after its smsbox, it keeps waiting to hand pending delivery
        # reports to a box that is gone ("smsbox_list empty!") until it is killed.
        self._terminate(self._bearerbox)
        self._terminate(self._smsbox)
        self._smsbox = self._bearerbox = None

    def crash(self) -> None:
        """Kill both boxes at once (SIGKILL): nothing is flushed or unbound on the way out."""
        for process in (self._bearerbox, self._smsbox):
            if process is not None and process.poll() is None:
                process.kill()
                process.wait(timeout=5)
        self._smsbox = self._bearerbox = None

    def restart_smsbox(self, mo_url: str | None = None, timeout: float = READY_TIMEOUT) -> None:
        """Point incoming SMS at a new endpoint: rewrite the config and restart only smsbox."""
        if mo_url is not None:
            self.settings.mo_url = mo_url
        self.write_config()
        self._terminate(self._smsbox)
        self._smsbox = None
        deadline = time.monotonic() + timeout
        self._start_smsbox()
        self._wait(self._is_ready, deadline, "smsbox reconnected")
        self._wait(lambda: _port_open(self.sendsms_port), deadline, "smsbox sendsms port")

    def close(self) -> None:
        self.stop()

    # -- observation ---------------------------------------------------------------------------
    def status_text(self) -> str | None:
        """bearerbox's plain-text status page, or None when it does not answer."""
        query = urllib.parse.urlencode({"password": self.admin_password})
        try:
            with urllib.request.urlopen(f"{self.admin_url}/status.txt?{query}", timeout=1) as resp:
                return str(resp.read().decode("utf-8", errors="replace"))
        except (urllib.error.URLError, OSError):
            return None

    def log_tail(self, lines: int = 30) -> str:
        chunks = []
        for name in ("bearerbox.log", "smsbox.log", "smsc.log", "bearerbox.stderr", "smsbox.stderr"):
            path = self.workdir / name
            if path.exists():
                tail = path.read_text(errors="replace").splitlines()[-lines:]
                chunks.append(f"--- {name}\n" + "\n".join(tail))
        return "\n".join(chunks)

    def _is_ready(self) -> bool:
        status = self.status_text()
        if status is None or "SMSC connections:" not in status:
            return False
        smsc_part = status.split("SMSC connections:", 1)[1]
        box_part = status.split("Box connections:", 1)[-1].split("SMSC connections:", 1)[0]
        return "(online" in smsc_part and "smsbox:" in box_part

    def _spawn(self, binary: str, name: str) -> subprocess.Popen[bytes]:
        # -v 2: only warnings on stderr; the log files keep the level the settings ask for.
        stderr = open(self.workdir / f"{name}.stderr", "ab")  # noqa: SIM115 - owned by the child
        try:
            return subprocess.Popen(
                [*_DIE_WITH_PARENT, binary, "-v", "2", str(self.config_path)],
                cwd=self.workdir,
                stdin=subprocess.DEVNULL,
                stdout=stderr,
                stderr=stderr,
                start_new_session=True,
            )
        finally:
            stderr.close()

    def _terminate(self, process: subprocess.Popen[bytes] | None) -> None:
        if process is None or process.poll() is not None:
            return
        # SIGTERM lets bearerbox unbind the SMPP session cleanly; a box still draining its
        # queues after the grace period gets SIGKILL (tests keep no state in Kannel).
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=STOP_GRACE)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)

    def _wait(self, ready: Callable[[], bool], deadline: float, what: str) -> None:
        while not ready():
            for process in (self._bearerbox, self._smsbox):
                if process is not None and process.poll() is not None:
                    raise KannelError(
                        f"a Kannel box exited ({process.returncode}) while waiting for {what}\n{self.log_tail()}"
                    )
            if time.monotonic() > deadline:
                raise KannelError(f"timed out waiting for {what}\n{self.log_tail()}")
            time.sleep(0.05)


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def running_kannel(workdir: Path, settings: KannelSettings | None = None) -> Iterator[KannelProcess]:
    """Generator for fixtures: test SMSC + Kannel up, yielded, then everything torn down."""
    binaries = require_kannel()
    smsc = TestSmsc()
    smsc.start()
    kannel = KannelProcess(workdir, smsc, settings, binaries)
    try:
        kannel.start()
        yield kannel
    finally:
        kannel.close()
        smsc.close()


def make_kannel_fixture(scope: Any = "session", mo_url_fixture: str | None = None, **settings: Any) -> Any:
    """Build a pytest fixture yielding a running KannelProcess (its `.smsc` is the test SMSC).

    `mo_url_fixture` names a fixture returning the URL incoming SMS go to; `settings` are
    KannelSettings fields. Register the result in a conftest: `kannel = make_kannel_fixture()`.
    """

    @pytest.fixture(scope=scope)
    def kannel(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[KannelProcess]:
        options = KannelSettings(**settings)
        if mo_url_fixture is not None:
            options.mo_url = request.getfixturevalue(mo_url_fixture)
        yield from running_kannel(tmp_path_factory.mktemp("kannel"), options)

    return kannel
