"""Code scanner readers (keyboard wedge on stdin, serial port) that turn partial reads into lines."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator
from typing import Protocol

import serial


class KioskScannerError(Exception):
    """A code scanner cannot be opened or read."""


class ScannerReader(Protocol):
    """Anything that yields one scanned code per line."""

    name: str

    def lines(self) -> AsyncIterator[str]: ...

    async def close(self) -> None: ...


class LineAssembler:
    """Collects byte chunks into lines; pure so partial reads are easy to test.

    Scanners end a code with CR, LF or CR LF depending on their configuration; a CR LF split
    across two reads must not produce an empty extra line. A line longer than `max_line` is
    noise (a scanner left in a wrong mode, or line noise on the serial port) and is dropped.
    """

    def __init__(self, max_line: int = 256) -> None:
        self._buf = bytearray()
        self._is_overlong = False
        self._max_line = max_line

    def feed(self, chunk: bytes) -> list[str]:
        lines: list[str] = []
        for byte in chunk:
            if byte in (0x0A, 0x0D):
                if self._buf and not self._is_overlong:
                    lines.append(self._buf.decode("utf-8", errors="replace"))
                self._buf.clear()
                self._is_overlong = False
            elif len(self._buf) >= self._max_line:
                self._is_overlong = True
            else:
                self._buf.append(byte)
        return [line for line in (s.strip() for s in lines) if line]


class StreamScannerReader:
    """A keyboard-wedge scanner typing into this program's standard input (a console kiosk)."""

    def __init__(self, fd: int | None = None, name: str = "keyboard") -> None:
        self.name = name
        self._fd = sys.stdin.fileno() if fd is None else fd

    async def lines(self) -> AsyncIterator[str]:
        loop = asyncio.get_running_loop()
        assembler = LineAssembler()
        ready: asyncio.Queue[bytes] = asyncio.Queue()

        def on_readable() -> None:
            try:
                ready.put_nowait(os.read(self._fd, 4096))
            except BlockingIOError:
                pass
            except OSError:
                ready.put_nowait(b"")

        os.set_blocking(self._fd, False)
        loop.add_reader(self._fd, on_readable)
        try:
            while chunk := await ready.get():
                for line in assembler.feed(chunk):
                    yield line
        finally:
            loop.remove_reader(self._fd)

    async def close(self) -> None:
        return None


class SerialScannerReader:
    """A scanner on a serial port (RS-232 or USB CDC-ACM) via pyserial, read without threads."""

    def __init__(self, port: str, baudrate: int = 9600, name: str = "serial") -> None:
        self.name = name
        self._port_name = port
        self._baudrate = baudrate
        self._port: serial.Serial | None = None

    def open(self) -> None:
        try:
            # timeout=0: non-blocking reads driven by the event loop's readiness callback.
            self._port = serial.Serial(self._port_name, self._baudrate, timeout=0)
        except (serial.SerialException, OSError) as exc:
            raise KioskScannerError(f"cannot open scanner port {self._port_name}: {exc}") from exc

    async def lines(self) -> AsyncIterator[str]:
        if self._port is None:
            self.open()
        port = self._port
        assert port is not None
        loop = asyncio.get_running_loop()
        assembler = LineAssembler()
        ready: asyncio.Queue[bytes | BaseException] = asyncio.Queue()

        def on_readable() -> None:
            try:
                ready.put_nowait(port.read(port.in_waiting or 1))
            except (serial.SerialException, OSError) as exc:
                # A USB scanner unplugged: stop watching the dead descriptor and report once.
                loop.remove_reader(port.fileno())
                ready.put_nowait(exc)

        loop.add_reader(port.fileno(), on_readable)
        try:
            while True:
                chunk = await ready.get()
                if isinstance(chunk, BaseException):
                    raise KioskScannerError(f"scanner port {self._port_name} failed: {chunk}") from chunk
                for line in assembler.feed(chunk):
                    yield line
        finally:
            if port.is_open:
                loop.remove_reader(port.fileno())

    async def close(self) -> None:
        if self._port is not None:
            self._port.close()
            self._port = None
