"""Measure how many SMS per second one process pushes through Kannel's sendsms into an SMSC."""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import re
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from multiprocessing.connection import Connection
from multiprocessing.sharedctypes import Synchronized
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.services.sms_gateways import KannelGateway, OutgoingSms, kannel_dlr_url_template
from tests.support.kannel import KannelProcess, KannelSettings, TestSmsc, find_binary


async def _count_dlrs(counter: Synchronized[int], reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    # A bare HTTP/1.1 keep-alive answer: http.server's ThreadingHTTPServer capped Kannel's DLR
    # callbacks at 20-110/s and would have been what this measured.
    try:
        while True:
            await reader.readuntil(b"\r\n\r\n")  # Kannel's DLR calls are GETs without a body
            with counter.get_lock():
                counter.value += 1
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
    except (asyncio.IncompleteReadError, ConnectionError):
        writer.close()


def _serve_network_side(conn: Connection, dlr_counter: Synchronized[int]) -> None:
    """Child process: the SMSC and the DLR receiver, off the measured process's GIL as in production."""
    smsc = TestSmsc(dlr_delay=0.0)
    smsc.start()
    loop = asyncio.new_event_loop()
    threading.Thread(target=loop.run_forever, daemon=True).start()
    server = asyncio.run_coroutine_threadsafe(
        asyncio.start_server(lambda r, w: _count_dlrs(dlr_counter, r, w), "127.0.0.1", 0), loop
    ).result()
    conn.send((smsc.port, server.sockets[0].getsockname()[1]))
    conn.recv()  # until the parent is done
    smsc.close()


@contextmanager
def network_side() -> Iterator[tuple[Synchronized[int], int, int]]:
    """Run the SMSC and the DLR receiver in a second process; yields (DLR count, SMSC port, sink port)."""
    context = multiprocessing.get_context("spawn")
    dlrs = context.Value("q", 0)
    parent_end, child_end = context.Pipe()
    network = context.Process(target=_serve_network_side, args=(child_end, dlrs), daemon=True)
    network.start()
    smsc_port, sink_port = parent_end.recv()
    try:
        yield dlrs, smsc_port, sink_port
    finally:
        parent_end.send("stop")
        network.join(timeout=10)


def _sent_by_kannel(kannel: KannelProcess) -> int:
    """SMS the SMSC acknowledged, from bearerbox's status page ("SMS: received N (..), sent N")."""
    match = re.search(r"^SMS: received \d+ \(\d+ queued\), sent (\d+)", kannel.status_text() or "", re.M)
    return int(match.group(1)) if match else 0


def run(
    count: int, concurrency: int, kannel: KannelProcess, dlrs: Synchronized[int], dlr_url: str | None, cyrillic: bool
) -> None:
    sent_before, dlr_before = _sent_by_kannel(kannel), dlrs.value
    text = "Вы были рядом с заболевшим, сдайте тест" if cyrillic else "You were near a positive case, get tested"
    items = [OutgoingSms(f"+7916{i:07d}", f"{text} #{i}", f"n{i}") for i in range(count)]
    with KannelGateway(
        kannel.sendsms_url, kannel.settings.username, kannel.settings.password, "7377", dlr_url, concurrency=concurrency
    ) as gateway:
        start = time.perf_counter()
        results = gateway.send_many(items)
        submitted = time.perf_counter() - start
    accepted = sum(r.is_accepted for r in results)
    deadline = time.monotonic() + 120
    while _sent_by_kannel(kannel) - sent_before < accepted and time.monotonic() < deadline:
        time.sleep(0.02)
    at_smsc = time.perf_counter() - start
    line = f"concurrency={concurrency:3d} n={count} accepted/s={accepted / submitted:6.0f}"
    line += f" at-SMSC/s={accepted / at_smsc:6.0f}"
    if dlr_url:
        while dlrs.value - dlr_before < accepted and time.monotonic() < deadline:
            time.sleep(0.01)
        line += f" DLR-callbacks/s={(dlrs.value - dlr_before) / (time.perf_counter() - start):6.0f}"
    outcomes = {str(o): sum(r.outcome == o for r in results) for o in {r.outcome for r in results}}
    print(f"{line} outcomes={outcomes}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=5000)
    parser.add_argument("--concurrency", default="1,4,8,16")
    parser.add_argument("--max-pending-submits", type=int, default=100)
    parser.add_argument("--queue-limit", type=int, default=-1)
    parser.add_argument("--dlr", action="store_true", help="ask for delivery reports (mask 19) to a loopback sink")
    parser.add_argument("--cyrillic", action="store_true", help="UCS-2 texts instead of GSM-7")
    args = parser.parse_args()
    if find_binary("bearerbox") is None:
        sys.exit("Kannel is not installed: run `bash .ci/install-kannel.sh`")

    with network_side() as (dlrs, smsc_port, sink_port):
        dlr_url = kannel_dlr_url_template(f"http://127.0.0.1:{sink_port}/dlr") if args.dlr else None

        print(
            f"conditions: Kannel 1.4.5 bearerbox+smsbox, SMPP transceiver to an asyncio test SMSC in a second "
            f"process, max-pending-submits={args.max_pending_submits}, sms-outgoing-queue-limit={args.queue_limit}, "
            f"throughput unlimited, log-level=warning, access logs on, "
            f"dlr={'mask 19 to an asyncio sink in the SMSC process' if args.dlr else 'off'}, "
            f"text={'UCS-2' if args.cyrillic else 'GSM-7'}, httpx GET with keep-alive, "
            f"{os.cpu_count()} CPUs shared by Kannel, the SMSC and this client, load average {os.getloadavg()[0]:.1f}",
            flush=True,
        )
        settings = KannelSettings(
            log_level=2, max_pending_submits=args.max_pending_submits, outgoing_queue_limit=args.queue_limit
        )
        smsc_address = TestSmsc(port=smsc_port)  # only its port and credentials are read by KannelProcess
        with tempfile.TemporaryDirectory() as workdir:
            kannel = KannelProcess(Path(workdir), smsc_address, settings)
            try:
                kannel.start()
                run(200, 8, kannel, dlrs, dlr_url, args.cyrillic)  # warm-up
                for concurrency in (int(c) for c in args.concurrency.split(",")):
                    run(args.count, concurrency, kannel, dlrs, dlr_url, args.cyrillic)
            finally:
                kannel.close()


if __name__ == "__main__":
    main()
