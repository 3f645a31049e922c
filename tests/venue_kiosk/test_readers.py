"""Tests for scanner input: line assembly, keyboard-wedge and serial readers, and mangled codes on screen."""

from __future__ import annotations

import asyncio
import os
import termios
import tty
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from kiosk_fakes import make_config, make_credential

from venue_kiosk import codes
from venue_kiosk.app import KioskProgram
from venue_kiosk.readers import KioskScannerError, LineAssembler, SerialScannerReader, StreamScannerReader

NOW = datetime(2025, 3, 2, 9, 30, 15, tzinfo=UTC)
KEY = bytes(range(32))


def test_partial_reads_are_assembled_into_whole_lines() -> None:
    assembler = LineAssembler()
    assert assembler.feed(b"P1000NP") == []
    assert assembler.feed(b"UCU5AFLVH5") == []
    assert assembler.feed(b"HKE\r") == ["P1000NPUCU5AFLVH5HKE"]
    assert assembler.feed(b"\nABC\n\r\nDEF\r\n") == ["ABC", "DEF"]  # CR LF split across reads: no empty line


def test_overlong_noise_is_dropped_and_the_next_line_still_reads() -> None:
    assembler = LineAssembler(max_line=32)
    assert assembler.feed(b"x" * 100) == []
    assert assembler.feed(b"more noise\nP1GOOD\n") == ["P1GOOD"]


def test_utf8_split_across_reads_decodes_whole() -> None:
    assembler = LineAssembler()
    text = "ЗЙ000".encode()
    assert assembler.feed(text[:1]) == []
    assert assembler.feed(text[1:] + b"\n") == ["ЗЙ000"]


def _collect(reader: StreamScannerReader | SerialScannerReader, count: int) -> asyncio.Task[list[str]]:
    async def run() -> list[str]:
        out: list[str] = []
        async for line in reader.lines():
            out.append(line)
            if len(out) == count:
                break
        return out

    return asyncio.create_task(run())


def test_keyboard_wedge_on_a_pipe_delivers_lines_written_in_pieces() -> None:
    async def scenario() -> list[str]:
        rfd, wfd = os.pipe()
        try:
            task = _collect(StreamScannerReader(rfd), 2)
            for piece in (b"P1000", b"NPUCU5AFLVH5HKE\nP1", b"AAA\n"):
                os.write(wfd, piece)
                await asyncio.sleep(0.02)
            return await asyncio.wait_for(task, 2)
        finally:
            os.close(rfd)
            os.close(wfd)

    assert asyncio.run(scenario()) == ["P1000NPUCU5AFLVH5HKE", "P1AAA"]


def test_serial_scanner_on_a_pseudo_terminal_reads_partial_writes() -> None:
    async def scenario() -> list[str]:
        controller_fd, port_fd = os.openpty()
        tty.setraw(port_fd, termios.TCSANOW)  # a serial line carries bytes, not a terminal's cooked input
        reader = SerialScannerReader(os.ttyname(port_fd), 9600)
        reader.open()  # pyserial flushes pending input on open, as a real port does at start-up
        try:
            task = _collect(reader, 2)
            for piece in (b"P1000NPU", b"CU5AF", b"LVH5HKE\r\n", b"P1BBB\r", b"\n"):
                os.write(controller_fd, piece)
                await asyncio.sleep(0.02)
            return await asyncio.wait_for(task, 2)
        finally:
            await reader.close()
            os.close(controller_fd)
            os.close(port_fd)

    assert asyncio.run(scenario()) == ["P1000NPUCU5AFLVH5HKE", "P1BBB"]


def test_missing_serial_port_raises_a_scanner_error() -> None:
    with pytest.raises(KioskScannerError, match="cannot open scanner port"):
        SerialScannerReader("/dev/does-not-exist").open()


def test_scanned_codes_clean_and_mangled_reach_the_screen_and_only_clean_ones_the_queue(tmp_path: Path) -> None:
    good = codes.personal_code(KEY, 501, NOW)
    caps = codes.personal_code(KEY, 502, NOW).lower()  # caps lock on the tablet: still fine
    symbol_swapped = codes.personal_code(KEY, 503, NOW).replace("1", "!", 1)  # shifted digit row
    dropped = good[:7] + good[8:]
    substituted = good[:9] + ("2" if good[9] != "2" else "3") + good[10:]
    stale = codes.personal_code(KEY, 504, NOW - timedelta(minutes=5))  # a screenshot of an old code

    async def scenario() -> tuple[list[tuple[bool, str]], list[str]]:
        async with httpx.AsyncClient(trust_env=False) as http:
            program = KioskProgram(
                make_config(tmp_path, "http://127.0.0.1:9"),
                make_credential("http://127.0.0.1:9"),
                clock=lambda: NOW,
                http=http,
            )
            shown = [
                program.submit_scan(raw) for raw in (good, caps, symbol_swapped, dropped, substituted, stale, good)
            ]
            queued = [codes.parse_personal_code(i.token).person_ref for i in program.queue.pending(100)]
            program.queue.close()
            return [(r.is_ok, r.title) for r in shown], [str(q) for q in queued]

    shown, queued = asyncio.run(scenario())
    assert [ok for ok, _ in shown] == [True, True, False, False, False, False, True]
    assert "expired" in shown[5][1]
    assert queued == ["501", "502"]  # the repeated scan of the same phone is not queued twice
