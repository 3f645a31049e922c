"""A real OpenID Connect provider on loopback, standing in for the mos.ru account in tests."""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import queue
import secrets
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from html.parser import HTMLParser
from pathlib import Path
from typing import IO, Any, Literal
from urllib.parse import urljoin, urlsplit

import pytest

from tests.support.live import require

try:
    # Authlib 1.9.9+ builds its httpx integration on httpx2 and deprecates plain httpx.
    import httpx2 as httpx
except ImportError:  # pragma: no cover - older Authlib installs ship with httpx only
    import httpx  # type: ignore[no-redef]

PROVIDER_DIR = Path(__file__).resolve().parent / "oidc_provider"
NPM_CI_TIMEOUT_S = 300.0
# The provider is ready in about a second; a shared CI machine has stalled it past 20 s (the PostgreSQL
# suite running beside it), so the bound is generous: it only matters when something is wrong.
READY_TIMEOUT_S = 60.0
MAX_LOGIN_STEPS = 10

__all__ = [
    "OidcProvider",
    "OidcProviderError",
    "ensure_node_modules",
    "httpx",
    "login_via_http",
    "oidc_provider_fixture",
]

FixtureScope = Literal["session", "package", "module", "class", "function"]

DEFAULT_ACCOUNTS: tuple[dict[str, Any], ...] = (
    {"sub": "mos-1001", "phone_number": "+79161234567", "name": "Иван Петров"},
    {"sub": "mos-1002"},
)
DEFAULT_REDIRECT_URIS: tuple[str, ...] = ("http://127.0.0.1:5000/auth/mos/callback",)


class OidcProviderError(RuntimeError):
    """The test provider could not be installed, started or driven."""


def _node_modules_ready() -> bool:
    # npm writes this hidden lockfile last, so a half-finished install does not count.
    node_modules = PROVIDER_DIR / "node_modules"
    return (node_modules / ".package-lock.json").is_file() and (
        node_modules / "oidc-provider" / "package.json"
    ).is_file()


def ensure_node_modules() -> None:
    """Run `npm ci` once, serialised across processes (pytest-xdist workers, parallel runs)."""
    if _node_modules_ready():
        return
    npm = shutil.which("npm")
    if npm is None:
        require(False, "npm is not installed: the OpenID Connect test provider needs Node.js 20+ and npm")
    digest = hashlib.sha256(str(PROVIDER_DIR).encode()).hexdigest()[:16]
    lock_path = Path(tempfile.gettempdir()) / f"oidc-provider-npm-ci-{digest}.lock"
    with lock_path.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _node_modules_ready():
            return
        try:
            done = subprocess.run(
                [npm, "ci", "--no-audit", "--no-fund"],
                cwd=PROVIDER_DIR,
                capture_output=True,
                text=True,
                timeout=NPM_CI_TIMEOUT_S,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise OidcProviderError(f"npm ci took over {NPM_CI_TIMEOUT_S:.0f} s") from exc
        if done.returncode != 0:
            raise OidcProviderError(f"npm ci failed ({done.returncode}):\n{done.stderr[-4000:]}")


def _read_ready_line(stdout: IO[str], lines: queue.Queue[str]) -> None:
    for line in stdout:
        lines.put(line)


class OidcProvider:
    """A running provider with one confidential client; the code flow requires PKCE (S256)."""

    def __init__(
        self,
        tmp_dir: Path,
        *,
        redirect_uris: Sequence[str] = DEFAULT_REDIRECT_URIS,
        accounts: Sequence[dict[str, Any]] = DEFAULT_ACCOUNTS,
        client_id: str = "venues-web",
        client_secret: str | None = None,
        client_metadata: dict[str, Any] | None = None,
        any_loopback_port: bool = False,
    ) -> None:
        """Start the provider; with `any_loopback_port` an http://127.0.0.1 redirect URI matches
        on every port, so a session-wide provider serves test servers on ephemeral ports."""
        node = shutil.which("node")
        if node is None:
            require(False, "node is not installed: the OpenID Connect test provider needs Node.js 20+")
        ensure_node_modules()
        self.client_id = client_id
        self.client_secret = client_secret or secrets.token_urlsafe(24)
        self.redirect_uris = list(redirect_uris)
        client = {
            # oidc-provider ignores the port of loopback redirect URIs only for native clients
            # (RFC 8252, section 7.3); token endpoint authentication stays client_secret_basic.
            **({"application_type": "native"} if any_loopback_port else {}),
            **(client_metadata or {}),
            "client_id": self.client_id,
            "client_secret": self.client_secret,
            "redirect_uris": self.redirect_uris,
        }
        env = {
            **os.environ,
            "OIDC_CLIENT": json.dumps(client),
            "OIDC_ACCOUNTS": json.dumps(list(accounts), ensure_ascii=False),
            "NO_COLOR": "1",
        }
        tmp_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = tmp_dir / "oidc-provider.log"
        self._log = self.log_path.open("w")
        self.process = subprocess.Popen(
            [node, str(PROVIDER_DIR / "provider.mjs"), "0"],
            cwd=PROVIDER_DIR,
            env=env,
            # The provider exits when this pipe closes, so a killed test run leaves no orphan.
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
        )
        try:
            self.issuer = self._wait_ready()
        except BaseException:
            self.stop()
            raise

    def _wait_ready(self) -> str:
        assert self.process.stdout is not None
        lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=_read_ready_line, args=(self.process.stdout, lines), daemon=True).start()
        deadline = time.monotonic() + READY_TIMEOUT_S
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = lines.get(timeout=min(left, 0.2))
            except queue.Empty:
                if self.process.poll() is not None:
                    break
                continue
            if line.startswith("READY "):
                return line.split(maxsplit=1)[1].strip()
        raise OidcProviderError(
            f"provider not ready within {READY_TIMEOUT_S:.0f} s "
            f"(exit code {self.process.poll()}): {self.log_path.read_text()[-2000:]}"
        )

    @property
    def metadata_url(self) -> str:
        return f"{self.issuer}/.well-known/openid-configuration"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        for stream in (self.process.stdin, self.process.stdout):
            if stream is not None:
                stream.close()
        self._log.close()

    def __enter__(self) -> OidcProvider:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    def login_via_http(self, client: httpx.Client, authorize_url: str, sub: str, *, approve: bool = True) -> str:
        return login_via_http(client, authorize_url, sub, approve=approve)


class _FormParser(HTMLParser):
    """Collects the first form of a page and the link with id="abort"."""

    def __init__(self) -> None:
        super().__init__()
        self.action: str | None = None
        self.fields: dict[str, str] = {}
        self.abort_href: str | None = None
        self._in_form = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attr = {k: v or "" for k, v in attrs}
        if tag == "form" and self.action is None:
            self.action = attr.get("action", "")
            self._in_form = True
        elif tag in ("input", "button") and self._in_form and attr.get("name"):
            self.fields.setdefault(attr["name"], attr.get("value", ""))
        elif tag == "a" and attr.get("id") == "abort":
            self.abort_href = attr.get("href")

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self._in_form = False


def login_via_http(client: httpx.Client, authorize_url: str, sub: str, *, approve: bool = True) -> str:
    """Sign in as `sub` and consent, returning the redirect to the relying party unfollowed.

    The returned URL carries `code`, `state` and `iss` (or `error=access_denied` when
    `approve` is false). Pass a fresh client to start without a provider session.
    """
    origin = "{0.scheme}://{0.netloc}".format(urlsplit(authorize_url))
    response = client.get(authorize_url, follow_redirects=False)
    for _ in range(MAX_LOGIN_STEPS):
        if response.is_redirect:
            target = urljoin(str(response.url), response.headers["location"])
            if not target.startswith(origin + "/"):
                return target
            response = client.get(target, follow_redirects=False)
            continue
        if response.status_code != 200:
            raise OidcProviderError(
                f"provider answered {response.status_code} at {response.url}: {response.text[:500]}"
            )
        form = _FormParser()
        form.feed(response.text)
        if form.action is None:
            raise OidcProviderError(f"no form on {response.url}: {response.text[:500]}")
        if not approve and form.abort_href:
            response = client.get(urljoin(str(response.url), form.abort_href), follow_redirects=False)
            continue
        if "login" in form.fields:
            form.fields["login"] = sub
        response = client.post(urljoin(str(response.url), form.action), data=form.fields, follow_redirects=False)
    raise OidcProviderError(f"no redirect to the relying party after {MAX_LOGIN_STEPS} steps")


def oidc_provider_fixture(
    name: str = "oidc_provider",
    *,
    scope: FixtureScope = "session",
    redirect_uris: Sequence[str] = DEFAULT_REDIRECT_URIS,
    accounts: Sequence[dict[str, Any]] = DEFAULT_ACCOUNTS,
    client_metadata: dict[str, Any] | None = None,
    any_loopback_port: bool = False,
) -> Callable[..., Iterator[OidcProvider]]:
    """Build a fixture yielding a running OidcProvider; bind it to a module or conftest name:

    `mos_provider = oidc_provider_fixture("mos_provider", any_loopback_port=True)`
    """

    @pytest.fixture(name=name, scope=scope)
    def _provider(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OidcProvider]:
        provider = OidcProvider(
            tmp_path_factory.mktemp("oidc-provider"),
            redirect_uris=redirect_uris,
            accounts=accounts,
            client_metadata=client_metadata,
            any_loopback_port=any_loopback_port,
        )
        try:
            yield provider
        finally:
            provider.stop()

    return _provider
