"""Command line: `python -m venue_kiosk [--config FILE] enrol --server URL --code CODE | run`."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from pathlib import Path

import httpx

from venue_kiosk.config import KioskConfig, KioskConfigError, load_config, load_credential, save_credential
from venue_kiosk.readers import ScannerReader, SerialScannerReader, StreamScannerReader
from venue_kiosk.sync import SyncError, enrol


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m venue_kiosk")
    parser.add_argument(
        "--config", type=Path, default=os.environ.get("VENUE_KIOSK_CONFIG"), help="TOML file with a [kiosk] table"
    )
    sub = parser.add_subparsers(dest="command", required=True)
    enrol_cmd = sub.add_parser("enrol", help="pair this kiosk with an entrance")
    enrol_cmd.add_argument("--server", help="server base URL (default: server_url from the config)")
    enrol_cmd.add_argument("--code", required=True, help="pairing code shown to the venue operator")
    sub.add_parser("run", help="run the kiosk")
    return parser


async def _enrol(config: KioskConfig, server: str, code: str) -> None:
    async with httpx.AsyncClient(timeout=config.sync_timeout_s) as http:
        cred = await enrol(http, server, code)
    save_credential(config.credential_path, cred)
    print(f"Enrolled as kiosk {cred.kiosk_id} at {cred.venue_name}, {cred.entrance_name}")


def _readers(config: KioskConfig) -> list[ScannerReader]:
    readers: list[ScannerReader] = []
    if config.scanner_stdin:
        readers.append(StreamScannerReader())
    if config.scanner_serial_port:
        readers.append(SerialScannerReader(config.scanner_serial_port, config.scanner_serial_baud))
    return readers


async def _run(config: KioskConfig) -> None:
    # Imported here so `enrol` works on a machine whose Bluetooth stack is broken.
    from venue_kiosk.app import KioskProgram

    backend_kwargs = {}
    backend = None
    if config.ble_bumble_transport:
        from venue_kiosk.ble_bumble import BumbleScanner

        backend, backend_kwargs = BumbleScanner, {"bumble_transport": config.ble_bumble_transport}
    program = KioskProgram(
        config,
        load_credential(config.credential_path),
        readers=_readers(config),
        ble_backend=backend,
        ble_backend_kwargs=backend_kwargs,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await program.run(stop)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request would bury real problems
    try:
        config = load_config(args.config)
        if args.command == "enrol":
            server = args.server or config.server_url
            if not server:
                print("enrol: --server is required (or server_url in the config)", file=sys.stderr)
                return 2
            asyncio.run(_enrol(config, server, args.code))
        else:
            asyncio.run(_run(config))
    except (KioskConfigError, SyncError) as exc:
        print(f"venue_kiosk: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
