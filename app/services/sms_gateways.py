"""HTTP clients for SMS gateways (Kannel sendsms, a generic JSON gateway) and SMS length rules."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from types import TracebackType
from typing import Protocol, Self

from app.services.sms_transport import AiohttpTransport, HttpAnswer, HttpRequest, Transport

# -- SMS length rules ---------------------------------------------------------------------------

# GSM 03.38 default alphabet; the extension table's characters cost two septets (0x1B escape).
GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM7_EXTENSION = frozenset("\f^{}\\[~]|€")

GSM7_SINGLE, GSM7_PART = 160, 153  # a 6-octet concatenation header costs 7 septets per part
UCS2_SINGLE, UCS2_PART = 70, 67  # ... and 3 UTF-16 code units per part


class SmsEncoding(StrEnum):
    GSM7 = "gsm7"
    UCS2 = "ucs2"


def is_gsm7(text: str) -> bool:
    return all(ch in GSM7_BASIC or ch in GSM7_EXTENSION for ch in text)


def _units(text: str, encoding: SmsEncoding) -> list[int]:
    """Cost of each character: septets for GSM-7, UTF-16 code units for UCS-2."""
    if encoding is SmsEncoding.GSM7:
        return [2 if ch in GSM7_EXTENSION else 1 for ch in text]
    return [2 if ord(ch) > 0xFFFF else 1 for ch in text]


def sms_segments(text: str) -> tuple[SmsEncoding, int]:
    """Encoding and number of SMS parts the text needs (an empty text is still one SMS).

    Parts are packed greedily without splitting a character: an escaped GSM-7 character or a
    UTF-16 surrogate pair never straddles two parts, as handsets could not join them.
    """
    encoding = SmsEncoding.GSM7 if is_gsm7(text) else SmsEncoding.UCS2
    units = _units(text, encoding)
    single, part = (GSM7_SINGLE, GSM7_PART) if encoding is SmsEncoding.GSM7 else (UCS2_SINGLE, UCS2_PART)
    if sum(units) <= single:
        return encoding, 1
    count, used = 1, 0
    for cost in units:
        if used + cost > part:
            count, used = count + 1, 0
        used += cost
    return encoding, count


def shorten_for_sms(text: str, max_segments: int) -> str:
    """Return text unchanged if it fits in max_segments parts, else cut at a word with an ellipsis.

    A GSM-7 head gets "..." because "…" is not in the GSM alphabet and would switch the whole
    message to UCS-2, halving its capacity. A single word longer than the budget is cut mid-word.
    """
    if max_segments < 1:
        raise ValueError("max_segments must be at least 1")
    if sms_segments(text)[1] <= max_segments:
        return text

    def with_ellipsis(head: str) -> str:
        head = head.rstrip().rstrip(",.;:-–—").rstrip()
        return head + ("..." if is_gsm7(head) else "…")

    low, high = 0, len(text)  # a cut at `low` fits, one at `high` does not
    while high - low > 1:
        middle = (low + high) // 2
        if sms_segments(with_ellipsis(text[:middle]))[1] <= max_segments:
            low = middle
        else:
            high = middle
    # Prefer the end of the last whole word: text[i] being a space means text[:i] ends one.
    boundary = next((i for i in range(low, 0, -1) if text[i].isspace()), 0)
    return with_ellipsis(text[:boundary] if boundary else text[:low])


# -- results and delivery reports -------------------------------------------------------------


class SendOutcome(StrEnum):
    ACCEPTED = "accepted"
    TRANSIENT_ERROR = "transient_error"  # retry later with backoff
    PERMANENT_ERROR = "permanent_error"  # retrying the same message cannot help


@dataclass(frozen=True)
class SendResult:
    outcome: SendOutcome
    message: str  # the gateway's own answer, or what went wrong on the way to it
    status_code: int | None = None
    # True when the request went out but no answer came back: the gateway may have taken it.
    in_doubt: bool = False

    @property
    def is_accepted(self) -> bool:
        return self.outcome is SendOutcome.ACCEPTED


@dataclass(frozen=True)
class OutgoingSms:
    to: str
    text: str
    reference: str  # our id for the message, echoed back in delivery reports


class DeliveryStatus(StrEnum):
    DELIVERED = "delivered"
    FAILED = "failed"
    BUFFERED = "buffered"  # the SMSC holds it (handset off, out of coverage)
    SUBMITTED = "submitted"  # the SMSC accepted it; no word from the handset yet


# Kannel's dlr-mask bits, also the %d value of the callback (one bit per callback).
KANNEL_DLR_TYPES = {
    1: DeliveryStatus.DELIVERED,
    2: DeliveryStatus.FAILED,  # undelivered, reported by the handset's network
    4: DeliveryStatus.BUFFERED,
    8: DeliveryStatus.SUBMITTED,  # submit_sm_resp OK ("ACK/")
    16: DeliveryStatus.FAILED,  # the SMSC refused submit_sm ("NACK/<code>/<reason>")
}
FINAL_STATUSES = frozenset({DeliveryStatus.DELIVERED, DeliveryStatus.FAILED})


@dataclass(frozen=True)
class DeliveryReport:
    reference: str
    status: DeliveryStatus
    dlr_type: int
    answer: str  # the SMSC's raw receipt text (%A), kept for support

    @property
    def is_final(self) -> bool:
        return self.status in FINAL_STATUSES


class DlrParseError(ValueError):
    """A delivery-report callback lacks our reference or carries an unknown type."""


# Appended to our callback URL; `{reference}` is ours, %d and %A are filled in by Kannel.
KANNEL_DLR_QUERY = "ref={reference}&type=%d&answer=%A"


def kannel_dlr_url_template(callback_url: str) -> str:
    """Our DLR callback URL with the query our parser reads (keep a secret in callback_url)."""
    return f"{callback_url}{'&' if '?' in callback_url else '?'}{KANNEL_DLR_QUERY}"


def parse_kannel_dlr(params: Mapping[str, str]) -> DeliveryReport:
    """Turn the query of a Kannel DLR callback (built by kannel_dlr_url_template) into a report."""
    reference = params.get("ref", "")
    if not reference:
        raise DlrParseError("delivery report without a reference")
    raw_type = params.get("type", "")
    try:
        dlr_type = int(raw_type)
        status = KANNEL_DLR_TYPES[dlr_type]
    except (ValueError, KeyError) as exc:
        raise DlrParseError(f"unknown Kannel DLR type {raw_type!r}") from exc
    return DeliveryReport(reference, status, dlr_type, params.get("answer", ""))


# -- gateways -------------------------------------------------------------------------------------

# Kannel expands %X escapes anywhere in dlr-url, so a percent-encoded reference such as "%D0..."
# would be mangled (%D is its meta-data escape). References are restricted to unreserved characters.
_SAFE_REFERENCE = re.compile(r"[A-Za-z0-9._~-]{1,64}")
# Kannel reads several recipients from one `to` separated by spaces: accept exactly one number.
_RECIPIENT = re.compile(r"\+?[0-9]{3,20}")
_TRANSIENT_STATUS = frozenset({401, 403, 408, 425, 429})
# sendsms parameters as headers of its POST form (the text is the body, its charset in Content-Type).
_KANNEL_POST_HEADERS = {
    "username": "X-Kannel-Username",
    "password": "X-Kannel-Password",
    "from": "X-Kannel-From",
    "to": "X-Kannel-To",
    "coding": "X-Kannel-Coding",
    "dlr-mask": "X-Kannel-DLR-Mask",
    "dlr-url": "X-Kannel-DLR-Url",
}


class SmsGateway(Protocol):
    def send(self, to: str, text: str, reference: str) -> SendResult: ...

    def send_many(self, items: Iterable[OutgoingSms], start_within: float | None = None) -> list[SendResult]: ...

    def close(self) -> None: ...


def classify_http_status(status_code: int) -> SendOutcome:
    """2xx accepted; 5xx, throttling and credential refusals transient; other 4xx permanent.

    A refused credential is a configuration fault, not the message's: once an operator fixes it
    the queued notices must still go out, so it counts as transient (and should raise an alert).
    """
    if 200 <= status_code < 300:
        return SendOutcome.ACCEPTED
    if status_code >= 500 or status_code in _TRANSIENT_STATUS:
        return SendOutcome.TRANSIENT_ERROR
    return SendOutcome.PERMANENT_ERROR


class _HttpGateway:
    """What both gateways share: a transport made on first use, and batch submission in order.

    A subclass turns a message into an HTTP request (or refuses it before any request) and reads
    the gateway's answer; the transport sends the whole batch concurrently.
    """

    def __init__(self, transport: Transport | None, timeout: float, concurrency: int) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self.concurrency = concurrency
        self.timeout = timeout
        self._owns_transport = transport is None
        self._transport = transport

    @property
    def transport(self) -> Transport:
        if self._transport is None:
            self._transport = AiohttpTransport(self.timeout, self.concurrency)
        return self._transport

    def request_for(self, message: OutgoingSms) -> HttpRequest | SendResult:
        """The request that submits `message`, or the result when it is refused before sending."""
        raise NotImplementedError

    def read_answer(self, answer: HttpAnswer) -> SendResult:
        return SendResult(classify_http_status(answer.status), answer.text.strip()[:500], answer.status)

    def send(self, to: str, text: str, reference: str) -> SendResult:
        return self.send_many([OutgoingSms(to, text, reference)])[0]

    def send_many(self, items: Iterable[OutgoingSms], start_within: float | None = None) -> list[SendResult]:
        """Submit many messages over `concurrency` kept-alive connections; results keep order.

        Each result is independent: one refused message does not stop the others. A message whose
        request has not started within `start_within` seconds is not sent (a transient error, not in
        doubt): a slow gateway cannot keep a batch busy past the dispatcher's claim.
        """
        prepared = [self.request_for(m) for m in items]
        requests = [p for p in prepared if isinstance(p, HttpRequest)]
        exchanges = iter(self.transport.exchange_many(requests, start_within))
        results: list[SendResult] = []
        for item in prepared:
            if isinstance(item, SendResult):
                results.append(item)
                continue
            exchange = next(exchanges)
            if isinstance(exchange, HttpAnswer):
                results.append(self.read_answer(exchange))
            else:
                # After a read timeout or a dropped connection the gateway may have accepted the
                # message, and neither Kannel nor the generic API has idempotency keys: in_doubt
                # lets the dispatcher wait for a delivery report instead of retrying blindly.
                results.append(SendResult(SendOutcome.TRANSIENT_ERROR, exchange.detail, in_doubt=exchange.in_doubt))
        return results

    def close(self) -> None:
        if self._owns_transport and self._transport is not None:
            self._transport.close()
            self._transport = None

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class KannelGateway(_HttpGateway):
    """Kannel's HTTP sendsms interface (smsbox), with delivery reports to our callback.

    Kannel quirks handled here:
    - sendsms answers 202 "0: Accepted for delivery", or 202 "3: Queued for later delivery" when
      the SMSC link is down (Kannel keeps it; without a store file a restart loses it); older
      versions answer 200 "Sent.". A full queue (sms-outgoing-queue-limit) is 503 "Temporal
      failure, try again later."; bad credentials 403; a bad or black-listed number 400.
    - Text is sent with charset=UTF-8; coding=2 (UCS-2) is needed for anything outside GSM-7,
      else Kannel silently turns Cyrillic into "?" (checked: "Привет" reached the SMSC as "??????").
    - A long text is split by Kannel itself (concatenation = true, max-messages in the
      sendsms-user group); texts above `max_segments` are refused here before submission.
    """

    def __init__(
        self,
        sendsms_url: str,
        username: str,
        password: str,
        sender: str,
        dlr_url_template: str | None = None,
        *,
        dlr_mask: int = 1 | 2 | 16,
        max_segments: int = 10,
        timeout: float = 5.0,
        concurrency: int = 8,
        transport: Transport | None = None,
    ) -> None:
        super().__init__(transport, timeout, concurrency)
        self.sendsms_url = sendsms_url
        self.username, self.password, self.sender = username, password, sender
        self.dlr_url_template = dlr_url_template
        self.dlr_mask = dlr_mask
        self.max_segments = max_segments

    def sendsms_params(self, to: str, text: str, reference: str) -> dict[str, str]:
        """The sendsms parameters for one message; they carry the password, so never log them whole."""
        if not _SAFE_REFERENCE.fullmatch(reference):
            raise ValueError(f"reference must match {_SAFE_REFERENCE.pattern}: {reference!r}")
        params = {
            "username": self.username,
            "password": self.password,
            "from": self.sender,
            "to": to.strip(),
            "text": text,
            "charset": "UTF-8",
        }
        if not is_gsm7(text):
            params["coding"] = "2"
        if self.dlr_url_template:
            params["dlr-mask"] = str(self.dlr_mask)
            params["dlr-url"] = self.dlr_url_template.replace("{reference}", reference)
        return params

    def request_for(self, message: OutgoingSms) -> HttpRequest | SendResult:
        encoding, segments = sms_segments(message.text)
        if segments > self.max_segments:
            return SendResult(
                SendOutcome.PERMANENT_ERROR, f"text needs {segments} {encoding} parts, the limit is {self.max_segments}"
            )
        if not _RECIPIENT.fullmatch(message.to.strip()):
            # Not echoed back: the answer is stored with the message, and numbers are never in clear.
            return SendResult(SendOutcome.PERMANENT_ERROR, "invalid recipient: not one phone number")
        # sendsms's POST form (text in the body, the rest in X-Kannel headers) rather than its GET
        # query: the HTTP client never repeats a POST on its own (see app.services.sms_transport).
        params = self.sendsms_params(message.to, message.text, message.reference)
        headers = {_KANNEL_POST_HEADERS[name]: value for name, value in params.items() if name in _KANNEL_POST_HEADERS}
        headers["Content-Type"] = f"text/plain; charset={params['charset']}"
        return HttpRequest("POST", self.sendsms_url, body=params["text"].encode(params["charset"]), headers=headers)

    def read_answer(self, answer: HttpAnswer) -> SendResult:
        text = answer.text.strip()
        outcome = classify_http_status(answer.status)
        # "0:" accepted and "3:" queued are both Kannel's responsibility from here on.
        if outcome is SendOutcome.ACCEPTED and not text.startswith(("0:", "3:", "Sent")):
            outcome = SendOutcome.TRANSIENT_ERROR
        return SendResult(outcome, text, answer.status)


@dataclass(frozen=True)
class JsonFieldNames:
    to: str = "to"
    text: str = "text"
    reference: str = "reference"
    sender: str = "sender"


class GenericHttpGateway(_HttpGateway):
    """A JSON-over-HTTP SMS API: one POST per message, field names and auth header configurable."""

    def __init__(
        self,
        url: str,
        *,
        sender: str | None = None,
        auth_header: tuple[str, str] | None = None,
        fields: JsonFieldNames | None = None,
        extra: Mapping[str, object] | None = None,
        timeout: float = 5.0,
        concurrency: int = 8,
        transport: Transport | None = None,
    ) -> None:
        super().__init__(transport, timeout, concurrency)
        self.url = url
        self.sender = sender
        self.headers = dict([auth_header]) if auth_header else {}
        self.fields = fields or JsonFieldNames()
        self.extra = dict(extra or {})

    def payload(self, to: str, text: str, reference: str) -> dict[str, object]:
        body: dict[str, object] = {
            **self.extra,
            self.fields.to: to.strip(),
            self.fields.text: text,
            self.fields.reference: reference,
        }
        if self.sender is not None:
            body[self.fields.sender] = self.sender
        return body

    def request_for(self, message: OutgoingSms) -> HttpRequest | SendResult:
        return HttpRequest(
            "POST", self.url, json=self.payload(message.to, message.text, message.reference), headers=self.headers
        )
