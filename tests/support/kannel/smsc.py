"""A small SMPP 3.4 server playing the operator's SMSC for a real Kannel in tests."""

from __future__ import annotations

import asyncio
import itertools
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

# Command ids from the SMPP 3.4 specification; a response is the request id with bit 31 set.
BIND_RECEIVER = 0x00000001
BIND_TRANSMITTER = 0x00000002
SUBMIT_SM = 0x00000004
DELIVER_SM = 0x00000005
UNBIND = 0x00000006
BIND_TRANSCEIVER = 0x00000009
ENQUIRE_LINK = 0x00000015
GENERIC_NACK = 0x80000000
RESP = 0x80000000

ESME_ROK = 0x00000000
ESME_RINVCMDID = 0x00000003
ESME_RINVDSTADR = 0x0000000B

TLV_RECEIPT_MESSAGE_ID = 0x001E
TLV_MESSAGE_PAYLOAD = 0x0424
TLV_MESSAGE_STATE = 0x0427
MESSAGE_STATES = {"DELIVRD": 2, "EXPIRED": 3, "DELETED": 4, "UNDELIV": 5, "REJECTD": 8}

# GSM 03.38 default alphabet, one septet per octet as Kannel sends it over SMPP (unpacked).
GSM7_BASIC = (
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM7_EXTENSION = {
    0x0A: "\f",
    0x14: "^",
    0x28: "{",
    0x29: "}",
    0x2F: "\\",
    0x3C: "[",
    0x3D: "~",
    0x3E: "]",
    0x40: "|",
    0x65: "€",
}
_GSM7_ENCODE = {ch: bytes([i]) for i, ch in enumerate(GSM7_BASIC) if i != 0x1B}
_GSM7_ENCODE.update({ch: bytes([0x1B, code]) for code, ch in GSM7_EXTENSION.items()})


def decode_gsm7(data: bytes) -> str:
    """Decode unpacked GSM 03.38 septets, honouring the 0x1B escape to the extension table."""
    out: list[str] = []
    escaped = False
    for octet in data:
        if escaped:
            out.append(GSM7_EXTENSION.get(octet, " "))
            escaped = False
        elif octet == 0x1B:
            escaped = True
        else:
            out.append(GSM7_BASIC[octet & 0x7F])
    return "".join(out)


def encode_gsm7(text: str) -> bytes | None:
    """Encode text as unpacked GSM 03.38 septets, or None if a character is outside the alphabet."""
    try:
        return b"".join(_GSM7_ENCODE[ch] for ch in text)
    except KeyError:
        return None


def decode_short_message(data: bytes, data_coding: int) -> str:
    """Turn a short_message back into text by its SMPP data_coding."""
    coding = data_coding & 0x0F if data_coding & 0xF0 == 0xF0 else data_coding
    if coding == 0x08:
        return data.decode("utf-16-be", errors="replace")
    if coding == 0x03:
        return data.decode("latin-1")
    if coding in (0x00, 0x01) or data_coding & 0xF0 == 0xF0:
        return decode_gsm7(data)
    return data.hex()


@dataclass(frozen=True)
class SubmittedPart:
    """One submit_sm as the SMSC received it (a long message arrives as several parts)."""

    message_id: str
    sender: str
    recipient: str
    text: str
    data_coding: int
    registered_delivery: int
    concat: tuple[int, int, int] | None  # (reference, total, sequence) from the UDH
    received_at: datetime


@dataclass
class ReceivedSms:
    """A whole message reassembled from its parts."""

    sender: str
    recipient: str
    text: str
    data_coding: int
    message_ids: list[str] = field(default_factory=list)


class _Reader:
    """Cursor over a PDU body: C-octet strings and big-endian integers."""

    def __init__(self, body: bytes) -> None:
        self.body = body
        self.pos = 0

    def cstr(self) -> str:
        end = self.body.index(b"\x00", self.pos)
        value = self.body[self.pos : end].decode("latin-1")
        self.pos = end + 1
        return value

    def u8(self) -> int:
        value = self.body[self.pos]
        self.pos += 1
        return value

    def octets(self, length: int) -> bytes:
        value = self.body[self.pos : self.pos + length]
        self.pos += length
        return value

    def tlvs(self) -> dict[int, bytes]:
        found: dict[int, bytes] = {}
        while self.pos + 4 <= len(self.body):
            tag, length = struct.unpack_from(">HH", self.body, self.pos)
            self.pos += 4
            found[tag] = self.octets(length)
        return found


def _cstr(value: str) -> bytes:
    return value.encode("latin-1") + b"\x00"


def _pdu(command_id: int, status: int, sequence: int, body: bytes = b"") -> bytes:
    return struct.pack(">IIII", 16 + len(body), command_id, status, sequence) + body


def _parse_concat(udh: bytes) -> tuple[int, int, int] | None:
    """Find the concatenation element (IEI 0x00 with an 8-bit, 0x08 with a 16-bit reference)."""
    pos = 0
    while pos + 2 <= len(udh):
        iei, length = udh[pos], udh[pos + 1]
        data = udh[pos + 2 : pos + 2 + length]
        if iei == 0x00 and length == 3:
            return data[0], data[1], data[2]
        if iei == 0x08 and length == 4:
            return (data[0] << 8) | data[1], data[2], data[3]
        pos += 2 + length
    return None


def _sm_fields(body: bytes) -> tuple[str, str, int, int, int, bytes]:
    """Parse the common submit_sm/deliver_sm layout: source, dest, esm_class, reg, dcs, message."""
    r = _Reader(body)
    r.cstr()  # service_type
    r.u8(), r.u8()
    source = r.cstr()
    r.u8(), r.u8()
    destination = r.cstr()
    esm_class = r.u8()
    r.u8(), r.u8()  # protocol_id, priority_flag
    r.cstr(), r.cstr()  # schedule_delivery_time, validity_period
    registered_delivery = r.u8()
    r.u8()  # replace_if_present_flag
    data_coding = r.u8()
    r.u8()  # sm_default_msg_id
    short_message = r.octets(r.u8())
    payload = r.tlvs().get(TLV_MESSAGE_PAYLOAD)
    return source, destination, esm_class, registered_delivery, data_coding, payload or short_message


def _sm_body(
    source: str, destination: str, esm_class: int, data_coding: int, message: bytes, tlvs: bytes = b""
) -> bytes:
    return (
        _cstr("")
        + bytes([0, 0])
        + _cstr(source)
        + bytes([0, 0])
        + _cstr(destination)
        + bytes([esm_class, 0, 0])
        + _cstr("")
        + _cstr("")
        + bytes([0, 0, data_coding, 0])
        + bytes([len(message)])
        + message
        + tlvs
    )


class TestSmsc:
    """SMPP server on loopback: records submits, sends delivery receipts, injects incoming SMS.

    It runs its own asyncio loop in a daemon thread so synchronous tests can drive it.
    """

    __test__ = False  # not a pytest test class despite the name

    def __init__(
        self,
        system_id: str = "kannel",
        password: str = "secret",
        host: str = "127.0.0.1",
        port: int = 0,
        dlr_delay: float = 0.02,
    ) -> None:
        self.system_id, self.password, self.host, self.port = system_id, password, host, port
        self.dlr_delay = dlr_delay
        self.parts: list[SubmittedPart] = []
        self.messages: list[ReceivedSms] = []
        self.undeliverable: set[str] = set()  # recipients whose receipts say UNDELIV
        self.rejected: set[str] = set()  # recipients refused at submit_sm (ESME_RINVDSTADR)
        self.deliver_statuses: list[int] = []  # command_status of Kannel's deliver_sm_resp
        self._ids = itertools.count(1_000_000_001)  # numeric ids: Kannel parses them as numbers
        self._changed = threading.Condition()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="test-smsc", daemon=True)
        self._server: asyncio.Server | None = None
        self._sessions: list[_Session] = []
        self._pending_concat: dict[tuple[str, str, int], dict[int, SubmittedPart]] = {}

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> None:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(timeout=5)

    async def _start(self) -> None:
        self._server = await asyncio.start_server(self._serve, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    def close(self) -> None:
        if not self._thread.is_alive():
            return
        asyncio.run_coroutine_threadsafe(self._close(), self._loop).result(timeout=5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        self._loop.close()

    async def _close(self) -> None:
        if self._server is not None:
            self._server.close()
        for session in list(self._sessions):
            session.writer.close()
        if self._server is not None:
            await self._server.wait_closed()

    # -- what tests use ----------------------------------------------------------------------
    @property
    def bound_sessions(self) -> int:
        return sum(1 for s in self._sessions if s.can_receive)

    def wait_for_messages(self, count: int, timeout: float = 10.0) -> list[ReceivedSms]:
        """Block until at least `count` whole messages arrived; raise TimeoutError otherwise."""
        with self._changed:
            if not self._changed.wait_for(lambda: len(self.messages) >= count, timeout=timeout):
                raise TimeoutError(f"SMSC got {len(self.messages)} of {count} messages")
            return list(self.messages)

    def wait_until(self, predicate: Callable[[], bool], timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        with self._changed:
            while not predicate():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError("SMSC condition not reached")
                self._changed.wait(min(remaining, 0.1))

    def deliver_mo(self, sender: str, recipient: str, text: str) -> None:
        """Send a mobile-originated SMS to Kannel: GSM-7 when it fits, otherwise UCS-2."""
        gsm = encode_gsm7(text)
        coding, message = (0x00, gsm) if gsm is not None else (0x08, text.encode("utf-16-be"))
        if len(message) > 254:
            raise ValueError("incoming test SMS must fit one short_message")
        body = _sm_body(sender, recipient, 0x00, coding, message)
        asyncio.run_coroutine_threadsafe(self._send_to_receiver(DELIVER_SM, body), self._loop).result(5)

    # -- protocol ------------------------------------------------------------------------------
    async def _send_to_receiver(self, command_id: int, body: bytes) -> None:
        for session in self._sessions:
            if session.can_receive:
                session.send(command_id, ESME_ROK, body)
                return
        raise ConnectionError("no bound receiver session from Kannel")

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        session = _Session(writer)
        self._sessions.append(session)
        try:
            while True:
                header = await reader.readexactly(16)
                length, command_id, status, sequence = struct.unpack(">IIII", header)
                body = await reader.readexactly(length - 16)
                self._handle(session, command_id, status, sequence, body)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self._sessions.remove(session)
            writer.close()
            with self._changed:
                self._changed.notify_all()

    def _handle(self, session: _Session, command_id: int, status: int, sequence: int, body: bytes) -> None:
        if command_id in (BIND_RECEIVER, BIND_TRANSMITTER, BIND_TRANSCEIVER):
            r = _Reader(body)
            system_id, password = r.cstr(), r.cstr()
            ok = system_id == self.system_id and password == self.password
            session.can_receive = ok and command_id != BIND_TRANSMITTER
            session.reply(command_id | RESP, ESME_ROK if ok else 0x0E, sequence, _cstr("test-smsc"))
            with self._changed:
                self._changed.notify_all()
        elif command_id == ENQUIRE_LINK:
            session.reply(ENQUIRE_LINK | RESP, ESME_ROK, sequence)
        elif command_id == UNBIND:
            session.reply(UNBIND | RESP, ESME_ROK, sequence)
        elif command_id == SUBMIT_SM:
            self._on_submit(session, sequence, body)
        elif command_id == DELIVER_SM | RESP:
            with self._changed:
                self.deliver_statuses.append(status)
                self._changed.notify_all()
        elif not command_id & RESP:
            session.reply(GENERIC_NACK, ESME_RINVCMDID, sequence)

    def _on_submit(self, session: _Session, sequence: int, body: bytes) -> None:
        source, destination, esm_class, registered, coding, message = _sm_fields(body)
        if destination in self.rejected:
            session.reply(SUBMIT_SM | RESP, ESME_RINVDSTADR, sequence, _cstr(""))
            return
        message_id = str(next(self._ids))
        session.reply(SUBMIT_SM | RESP, ESME_ROK, sequence, _cstr(message_id))
        concat = None
        if esm_class & 0x40 and message:  # UDH indicator: strip the header before decoding
            udh_length = message[0]
            concat = _parse_concat(message[1 : 1 + udh_length])
            message = message[1 + udh_length :]
        part = SubmittedPart(
            message_id,
            source,
            destination,
            decode_short_message(message, coding),
            coding,
            registered,
            concat,
            datetime.now(UTC),
        )
        with self._changed:
            self.parts.append(part)
            self._assemble(part)
            self._changed.notify_all()
        if registered & 0x03:
            stat = "UNDELIV" if destination in self.undeliverable else "DELIVRD"
            self._loop.call_later(self.dlr_delay, self._send_receipt, part, stat)

    def _assemble(self, part: SubmittedPart) -> None:
        if part.concat is None:
            self.messages.append(
                ReceivedSms(part.sender, part.recipient, part.text, part.data_coding, [part.message_id])
            )
            return
        reference, total, _ = part.concat
        key = (part.sender, part.recipient, reference)
        pending = self._pending_concat.setdefault(key, {})
        pending[part.concat[2]] = part
        if len(pending) == total:
            ordered = [pending[i] for i in sorted(pending)]
            del self._pending_concat[key]
            self.messages.append(
                ReceivedSms(
                    part.sender,
                    part.recipient,
                    "".join(p.text for p in ordered),
                    part.data_coding,
                    [p.message_id for p in ordered],
                )
            )

    def _send_receipt(self, part: SubmittedPart, stat: str) -> None:
        stamp = part.received_at.strftime("%y%m%d%H%M")
        delivered = "001" if stat == "DELIVRD" else "000"
        text = (
            f"id:{part.message_id} sub:001 dlvrd:{delivered} submit date:{stamp} "
            f"done date:{stamp} stat:{stat} err:{'000' if delivered == '001' else '001'} text:"
        )
        tlvs = (
            struct.pack(">HH", TLV_RECEIPT_MESSAGE_ID, len(part.message_id) + 1)
            + _cstr(part.message_id)
            + struct.pack(">HHB", TLV_MESSAGE_STATE, 1, MESSAGE_STATES[stat])
        )
        # A receipt travels back the other way: from the handset (source) to the original sender.
        body = _sm_body(part.recipient, part.sender, 0x04, 0x00, text.encode("latin-1"), tlvs)
        for session in self._sessions:
            if session.can_receive:
                session.send(DELIVER_SM, ESME_ROK, body)
                return


class _Session:
    """One bound connection from Kannel."""

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self.writer = writer
        self.can_receive = False
        self._sequence = itertools.count(1)

    def reply(self, command_id: int, status: int, sequence: int, body: bytes = b"") -> None:
        self.writer.write(_pdu(command_id, status, sequence, body))

    def send(self, command_id: int, status: int, body: bytes) -> None:
        self.writer.write(_pdu(command_id, status, next(self._sequence), body))
