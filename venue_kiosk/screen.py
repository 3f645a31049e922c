"""The kiosk's local screen: a tiny loopback HTTP server for the tablet's browser in kiosk mode."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

import qrcode
import qrcode.image.svg

log = logging.getLogger(__name__)

_MAX_BODY = 4096


@dataclass(frozen=True, slots=True)
class ScreenResult:
    seq: int
    is_ok: bool
    title: str
    detail: str
    at: str


@dataclass
class ScreenState:
    """Everything the page shows; the program writes it, the server only reads it."""

    venue_name: str = ""
    entrance_name: str = ""
    qr_url: Callable[[datetime], str] = lambda _now: ""
    refresh: Callable[[], None] = lambda: None  # pulls live status in just before a read
    is_online: bool = False
    is_revoked: bool = False
    notices: list[str] = field(default_factory=list)
    queue_length: int = 0
    last_result: ScreenResult | None = None
    _seq: int = 0

    def show_result(self, is_ok: bool, title: str, detail: str, now: datetime) -> ScreenResult:
        self._seq += 1
        self.last_result = ScreenResult(self._seq, is_ok, title, detail, now.isoformat())
        return self.last_result

    def as_json(self, now: datetime) -> dict[str, Any]:
        self.refresh()
        return {
            "venue_name": self.venue_name,
            "entrance_name": self.entrance_name,
            "qr_url": self.qr_url(now),
            "online": self.is_online,
            "revoked": self.is_revoked,
            "notices": list(self.notices),
            "queue_length": self.queue_length,
            "result": asdict(self.last_result) if self.last_result else None,
        }


def qr_svg(data: str) -> str:
    """A self-contained SVG (no external assets), scaled by the page to fill the screen."""
    img = qrcode.make(data, image_factory=qrcode.image.svg.SvgPathImage, border=2)
    return str(img.to_string(encoding="unicode"))


_PAGE = """<!doctype html>
<html lang="ru"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Check-in</title>
<style>
body{margin:0;font-family:sans-serif;background:#fff;color:#111;text-align:center}
header{padding:1rem;font-size:1.6rem}
#qr{width:min(70vw,60vh);margin:0 auto}#qr svg{width:100%;height:auto}
#result{position:fixed;inset:0;display:none;color:#fff;font-size:3rem;padding-top:30vh}
#result.ok{display:block;background:#1a8f3a}#result.fail{display:block;background:#c62828}
#result small{display:block;font-size:1.5rem;margin-top:1rem}
#status{position:fixed;bottom:0;left:0;right:0;padding:.5rem;font-size:1.2rem}
#status.offline{background:#ffb300}#status.revoked{background:#c62828;color:#fff}
</style></head><body>
<header><b id="venue">__VENUE__</b><br><span id="entrance">__ENTRANCE__</span></header>
<div id="qr">__QR__</div>
<p>Наведите камеру телефона на код / Scan with your phone camera</p>
<div id="result"></div><div id="status"></div>
<script>
let seen = 0, qrUrl = "", buf = "";
async function poll() {
  try {
    const s = await (await fetch("/api/state", {cache: "no-store"})).json();
    if (s.qr_url !== qrUrl) { qrUrl = s.qr_url;
      document.getElementById("qr").innerHTML = await (await fetch("/qr.svg", {cache: "no-store"})).text(); }
    const st = document.getElementById("status");
    st.className = s.revoked ? "revoked" : (s.online ? "" : "offline");
    st.textContent = s.revoked ? "Kiosk revoked: check-ins are not being sent"
      : (s.online ? "" : "Offline: check-ins are saved and will be sent later (" + s.queue_length + ")");
    if (s.notices.length) st.textContent += " " + s.notices.join(" ");
    if (s.result && s.result.seq !== seen) { seen = s.result.seq; show(s.result); }
  } catch (e) { document.getElementById("status").className = "offline"; }
}
function show(r) {
  const el = document.getElementById("result");
  el.className = r.is_ok ? "ok" : "fail";
  el.textContent = r.title; const d = document.createElement("small"); d.textContent = r.detail; el.appendChild(d);
  setTimeout(() => { el.className = ""; }, 2500);
}
// A keyboard-wedge scanner types into the focused browser: collect keys until Enter.
document.addEventListener("keydown", async (e) => {
  if (e.key === "Enter") { const line = buf; buf = "";
    if (line) { await fetch("/api/scan", {method: "POST", body: line}); poll(); } }
  else if (e.key.length === 1) { buf += e.key; }
});
setInterval(poll, 1000); poll();
</script></body></html>
"""


def _html_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")


class ScreenServer:
    """HTTP/1.1 with one request per connection; enough for one local browser polling every second."""

    def __init__(
        self,
        state: ScreenState,
        clock: Callable[[], datetime],
        on_scan: Callable[[str], ScreenResult],
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self._state = state
        self._clock = clock
        self._on_scan = on_scan
        self._host = host
        self._port = port
        self._server: asyncio.Server | None = None
        self._svg_cache: tuple[str, str] = ("", "")

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, self._host, self._port)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    def _svg(self, now: datetime) -> str:
        url = self._state.qr_url(now)
        if self._svg_cache[0] != url:  # the code changes every few seconds; the page polls every second
            self._svg_cache = (url, qr_svg(url))
        return self._svg_cache[1]

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            status, ctype, body = await asyncio.wait_for(self._respond(reader), 5.0)
        except (TimeoutError, asyncio.IncompleteReadError, ValueError, ConnectionError):
            status, ctype, body = 400, "text/plain", b"bad request"
        try:
            writer.write(
                f"HTTP/1.1 {status} {'OK' if status == 200 else 'Error'}\r\nContent-Type: {ctype}\r\n"
                f"Content-Length: {len(body)}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n".encode()
                + body
            )
            await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    async def _respond(self, reader: asyncio.StreamReader) -> tuple[int, str, bytes]:
        request_line = (await reader.readuntil(b"\r\n")).decode("latin-1").split()
        if len(request_line) != 3:
            raise ValueError("malformed request line")
        method, path, _ = request_line
        headers: dict[str, str] = {}
        while (line := await reader.readuntil(b"\r\n")) != b"\r\n":
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        # Refuse other Host names so a web page elsewhere cannot reach this server by DNS rebinding.
        if headers.get("host", "").rsplit(":", 1)[0] not in {"127.0.0.1", "localhost", "[::1]"}:
            return 403, "text/plain", b"forbidden host"
        now = self._clock()
        path = path.split("?", 1)[0]
        if method == "GET" and path == "/":
            page = (
                _PAGE.replace("__VENUE__", _html_escape(self._state.venue_name))
                .replace("__ENTRANCE__", _html_escape(self._state.entrance_name))
                .replace("__QR__", self._svg(now))
            )
            return 200, "text/html; charset=utf-8", page.encode()
        if method == "GET" and path == "/qr.svg":
            return 200, "image/svg+xml", self._svg(now).encode()
        if method == "GET" and path == "/api/state":
            return 200, "application/json", json.dumps(self._state.as_json(now)).encode()
        if method == "POST" and path == "/api/scan":
            length = int(headers.get("content-length", "0"))
            if length > _MAX_BODY:
                return 413, "text/plain", b"too long"
            raw = (await reader.readexactly(length)).decode("utf-8", errors="replace")
            return 200, "application/json", json.dumps(asdict(self._on_scan(raw))).encode()
        return 404, "text/plain", b"not found"
