"""SMS gateway clients: length rules, DLR parsing, and the Kannel client against a real Kannel."""

from __future__ import annotations

import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from app.services.sms_gateways import (
    DeliveryStatus,
    DlrParseError,
    GenericHttpGateway,
    JsonFieldNames,
    KannelGateway,
    OutgoingSms,
    SendOutcome,
    SmsEncoding,
    classify_http_status,
    kannel_dlr_url_template,
    parse_kannel_dlr,
    shorten_for_sms,
    sms_segments,
)
from app.services.sms_transport import Exchange, HttpAnswer, HttpFailure, HttpRequest
from tests.support import kannel as kannel_support
from tests.support.kannel import KannelProcess, free_port, make_kannel_fixture
from tests.support.sms_transport import ScriptedTransport

# -- segmentation ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", (SmsEncoding.GSM7, 1)),
        ("a" * 160, (SmsEncoding.GSM7, 1)),
        ("a" * 161, (SmsEncoding.GSM7, 2)),
        ("a" * 306, (SmsEncoding.GSM7, 2)),
        ("a" * 307, (SmsEncoding.GSM7, 3)),
        ("я" * 70, (SmsEncoding.UCS2, 1)),
        ("я" * 71, (SmsEncoding.UCS2, 2)),
        ("я" * 134, (SmsEncoding.UCS2, 2)),
        ("я" * 135, (SmsEncoding.UCS2, 3)),
    ],
)
def test_sms_segments_use_single_and_concatenated_limits(text: str, expected: tuple[SmsEncoding, int]) -> None:
    assert sms_segments(text) == expected


def test_gsm_extension_characters_cost_two_septets() -> None:
    assert sms_segments("€" * 80) == (SmsEncoding.GSM7, 1)
    assert sms_segments("€" * 81) == (SmsEncoding.GSM7, 2)


def test_escaped_character_is_not_split_across_parts() -> None:
    # 306 septets would fit two parts, but the escape pair at 152/153 pushes one septet over.
    assert sms_segments("a" * 152 + "€" + "a" * 152) == (SmsEncoding.GSM7, 3)


def test_surrogate_pairs_count_as_two_ucs2_units() -> None:
    assert sms_segments("😀" * 35) == (SmsEncoding.UCS2, 1)
    assert sms_segments("😀" * 36) == (SmsEncoding.UCS2, 2)


def test_characters_outside_gsm_alphabet_force_ucs2() -> None:
    assert sms_segments("Café É")[0] is SmsEncoding.GSM7
    assert sms_segments("façade")[0] is SmsEncoding.UCS2  # GSM-7 has Ç but not ç
    assert sms_segments("Код 123")[0] is SmsEncoding.UCS2


def test_shorten_keeps_text_that_fits() -> None:
    text = "Вы были в кафе с 19:10 до 20:30"
    assert shorten_for_sms(text, 1) == text


def test_shorten_cuts_latin_at_a_word_with_gsm_ellipsis() -> None:
    sentence = "You were at Cafe X from 19:10 to 20:30, please get tested. "
    short = shorten_for_sms(sentence * 4, 1)
    # 157 characters fit before "..."; the 157th is the comma after a whole word, which is dropped.
    assert short == sentence * 2 + "You were at Cafe X from 19:10 to 20:30..."
    assert sms_segments(short) == (SmsEncoding.GSM7, 1)


def test_shorten_cuts_cyrillic_at_a_word_with_unicode_ellipsis() -> None:
    text = "Вы были в кафе Ромашка с 19:10 до 20:30; человек с положительным тестом был там"
    short = shorten_for_sms(text, 1)
    assert short == "Вы были в кафе Ромашка с 19:10 до 20:30; человек с положительным…"
    assert sms_segments(short) == (SmsEncoding.UCS2, 1)


def test_shorten_respects_several_segments() -> None:
    text = "слово " * 100
    short = shorten_for_sms(text, 3)
    assert sms_segments(short)[1] == 3
    assert short.endswith("слово…")


def test_shorten_cuts_a_single_overlong_word() -> None:
    assert shorten_for_sms("x" * 200, 1) == "x" * 157 + "..."


def test_shorten_rejects_zero_segments() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        shorten_for_sms("text", 0)


# -- delivery reports -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("dlr_type", "status", "is_final"),
    [
        ("1", DeliveryStatus.DELIVERED, True),
        ("2", DeliveryStatus.FAILED, True),
        ("4", DeliveryStatus.BUFFERED, False),
        ("8", DeliveryStatus.SUBMITTED, False),
        ("16", DeliveryStatus.FAILED, True),
    ],
)
def test_kannel_dlr_types_map_to_statuses(dlr_type: str, status: DeliveryStatus, is_final: bool) -> None:
    report = parse_kannel_dlr({"ref": "n-42", "type": dlr_type, "answer": "ACK/"})
    assert (report.reference, report.status, report.is_final) == ("n-42", status, is_final)


@pytest.mark.parametrize(
    "params",
    [
        {"type": "1"},
        {"ref": "", "type": "1"},
        {"ref": "n-1", "type": "3"},
        {"ref": "n-1", "type": "%d"},
        {"ref": "n-1"},
    ],
)
def test_malformed_dlr_is_rejected(params: dict[str, str]) -> None:
    with pytest.raises(DlrParseError):
        parse_kannel_dlr(params)


def test_dlr_url_template_extends_an_existing_query() -> None:
    assert kannel_dlr_url_template("http://h/dlr?secret=s") == "http://h/dlr?secret=s&ref={reference}&type=%d&answer=%A"
    assert kannel_dlr_url_template("http://h/dlr").startswith("http://h/dlr?ref=")


# -- HTTP answers (mocked transport) ----------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "outcome"),
    [
        (200, SendOutcome.ACCEPTED),
        (202, SendOutcome.ACCEPTED),
        (400, SendOutcome.PERMANENT_ERROR),
        (403, SendOutcome.TRANSIENT_ERROR),
        (404, SendOutcome.PERMANENT_ERROR),
        (429, SendOutcome.TRANSIENT_ERROR),
        (500, SendOutcome.TRANSIENT_ERROR),
        (503, SendOutcome.TRANSIENT_ERROR),
    ],
)
def test_http_status_classification(status: int, outcome: SendOutcome) -> None:
    assert classify_http_status(status) is outcome


def _kannel_with(handler: Callable[[HttpRequest], Exchange]) -> KannelGateway:
    return KannelGateway(
        "http://kannel/cgi-bin/sendsms",
        "u",
        "p",
        "7377",
        "http://app/dlr?ref={reference}&type=%d",
        transport=ScriptedTransport(handler),
    )


@pytest.mark.parametrize(
    ("status", "body", "outcome"),
    [
        (202, "0: Accepted for delivery", SendOutcome.ACCEPTED),
        (202, "3: Queued for later delivery", SendOutcome.ACCEPTED),
        (200, "Sent.", SendOutcome.ACCEPTED),
        (200, "<html>proxy login</html>", SendOutcome.TRANSIENT_ERROR),
        (503, "Temporal failure, try again later.", SendOutcome.TRANSIENT_ERROR),
        (400, "Number(s) has/have been denied by white- and/or black-lists.", SendOutcome.PERMANENT_ERROR),
        (403, "Authorization failed for sendsms", SendOutcome.TRANSIENT_ERROR),
    ],
)
def test_kannel_answers_map_to_outcomes(status: int, body: str, outcome: SendOutcome) -> None:
    with _kannel_with(lambda request: HttpAnswer(status, body)) as gateway:
        result = gateway.send("+79161234567", "hello", "n-1")
    assert (result.outcome, result.message, result.status_code) == (outcome, body, status)


def test_kannel_request_carries_ucs2_coding_and_reference_for_cyrillic() -> None:
    seen: list[HttpRequest] = []

    def handler(request: HttpRequest) -> Exchange:
        seen.append(request)
        return HttpAnswer(202, "0: Accepted for delivery")

    with _kannel_with(handler) as gateway:
        gateway.send("+79161234567", "Сдайте тест", "n-7")
        gateway.send("+79161234567", "Get tested", "n-8")
    assert {r.method for r in seen} == {"POST"}  # never re-sent by the HTTP client on its own
    cyrillic, latin = (r.headers for r in seen)
    assert cyrillic["X-Kannel-Coding"] == "2" and cyrillic["Content-Type"] == "text/plain; charset=UTF-8"
    assert seen[0].body == "Сдайте тест".encode()
    assert cyrillic["X-Kannel-DLR-Url"] == "http://app/dlr?ref=n-7&type=%d" and cyrillic["X-Kannel-DLR-Mask"] == "19"
    assert (cyrillic["X-Kannel-To"], cyrillic["X-Kannel-From"]) == ("+79161234567", "7377")
    assert "X-Kannel-Coding" not in latin


@pytest.mark.parametrize("in_doubt", [False, True])
def test_kannel_network_failures_are_transient_and_keep_the_doubt(in_doubt: bool) -> None:
    with _kannel_with(lambda request: HttpFailure("ReadTimeout", in_doubt)) as gateway:
        result = gateway.send("+79161234567", "hello", "n-1")
    assert (result.outcome, result.in_doubt, result.message) == (SendOutcome.TRANSIENT_ERROR, in_doubt, "ReadTimeout")


@pytest.mark.parametrize(
    ("to", "text"),
    [
        ("+79161234567 +79160000000", "hello"),  # Kannel would send to both numbers
        ("not-a-number", "hello"),
        ("+79161234567", "я" * 700),  # 11 parts, above max_segments
    ],
)
def test_kannel_refuses_bad_input_without_a_request(to: str, text: str) -> None:
    def handler(request: HttpRequest) -> Exchange:
        raise AssertionError("no request expected")

    with _kannel_with(handler) as gateway:
        assert gateway.send(to, text, "n-1").outcome is SendOutcome.PERMANENT_ERROR


def test_kannel_rejects_references_kannel_would_rewrite() -> None:
    with _kannel_with(lambda request: HttpAnswer(202, "")) as gateway, pytest.raises(ValueError):
        gateway.send("+79161234567", "hello", "ссылка%D")


def test_generic_gateway_posts_configured_json_fields_and_auth() -> None:
    seen: list[HttpRequest] = []

    def handler(request: HttpRequest) -> Exchange:
        seen.append(request)
        return HttpAnswer(201 if len(seen) == 1 else 422, '{"id": 1}')

    gateway = GenericHttpGateway(
        "http://sms/api",
        sender="Venue",
        auth_header=("Authorization", "Bearer t"),
        fields=JsonFieldNames(to="msisdn", text="body", reference="client_ref"),
        extra={"priority": "high"},
        transport=ScriptedTransport(handler),
    )
    first = gateway.send("+79161234567", "Сдайте тест", "n-1")
    second = gateway.send("+79161234567", "x", "n-2")
    assert first.outcome is SendOutcome.ACCEPTED and second.outcome is SendOutcome.PERMANENT_ERROR
    assert (seen[0].method, seen[0].url, seen[0].headers["Authorization"]) == ("POST", "http://sms/api", "Bearer t")
    assert seen[0].json == {
        "msisdn": "+79161234567",
        "body": "Сдайте тест",
        "client_ref": "n-1",
        "sender": "Venue",
        "priority": "high",
    }


def test_generic_gateway_unreachable_is_transient() -> None:
    with GenericHttpGateway(f"http://127.0.0.1:{free_port()}/api", timeout=1.0) as gateway:
        assert gateway.send("+79161234567", "hi", "n-1").outcome is SendOutcome.TRANSIENT_ERROR


# -- against a real Kannel ---------------------------------------------------------------------


def test_missing_kannel_skips_locally_with_the_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(kannel_support, "find_binary", lambda name: None)
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match=r"install-kannel\.sh"):
        kannel_support.require_kannel()


def test_missing_kannel_fails_under_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(kannel_support, "find_binary", lambda name: None)
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match=r"install-kannel\.sh"):
        kannel_support.require_kannel()


class Callbacks:
    """Loopback HTTP endpoint recording DLR and incoming-SMS callbacks; answers with `reply`."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, dict[str, str]]] = []
        self.reply = b"Thanks, you are checked in"
        self.changed = threading.Condition()
        callbacks = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                url = urllib.parse.urlsplit(self.path)
                with callbacks.changed:
                    callbacks.requests.append((url.path, dict(urllib.parse.parse_qsl(url.query))))
                    callbacks.changed.notify_all()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; charset=utf-8")
                self.send_header("Content-Length", str(len(callbacks.reply)))
                self.end_headers()
                self.wfile.write(callbacks.reply)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def wait_for(self, path: str, match: Callable[[dict[str, str]], bool], timeout: float = 10.0) -> dict[str, str]:
        found: list[dict[str, str]] = []

        def seen() -> bool:
            found[:] = [q for p, q in self.requests if p == path and match(q)]
            return bool(found)

        with self.changed:
            if not self.changed.wait_for(seen, timeout=timeout):
                raise TimeoutError(f"no {path} callback matched; got {self.requests}")
        return found[0]


@pytest.fixture(scope="module")
def callbacks() -> Iterator[Callbacks]:
    server = Callbacks()
    thread = threading.Thread(target=server.server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.server.shutdown()
    server.server.server_close()


@pytest.fixture(scope="module")
def mo_url(callbacks: Callbacks) -> str:
    return f"{callbacks.url}/sms/incoming"


kannel = make_kannel_fixture(scope="module", mo_url_fixture="mo_url")


@pytest.fixture
def gateway(kannel: KannelProcess, callbacks: Callbacks) -> Iterator[KannelGateway]:
    with KannelGateway(
        kannel.sendsms_url,
        kannel.settings.username,
        kannel.settings.password,
        "7377",
        kannel_dlr_url_template(f"{callbacks.url}/sms/dlr?secret=dlr-secret"),
        timeout=3.0,
    ) as client:
        yield client


def _arrived(kannel: KannelProcess, recipient: str, timeout: float = 10.0) -> list[str]:
    kannel.smsc.wait_until(lambda: any(m.recipient == recipient for m in kannel.smsc.messages), timeout)
    return [m.text for m in kannel.smsc.messages if m.recipient == recipient]


def test_latin_sms_reaches_smsc_and_delivery_report_comes_back(
    kannel: KannelProcess, gateway: KannelGateway, callbacks: Callbacks
) -> None:
    result = gateway.send("+79161110001", "Get tested: Cafe [X] 19:10-20:30, fee 0€", "n-101")
    assert result.outcome is SendOutcome.ACCEPTED, result
    assert _arrived(kannel, "79161110001") == ["Get tested: Cafe [X] 19:10-20:30, fee 0€"]
    query = callbacks.wait_for("/sms/dlr", lambda q: q.get("ref") == "n-101")
    report = parse_kannel_dlr(query)
    assert report.status is DeliveryStatus.DELIVERED and "stat:DELIVRD" in report.answer
    assert query["secret"] == "dlr-secret"


def test_cyrillic_sms_survives_as_ucs2(kannel: KannelProcess, gateway: KannelGateway, callbacks: Callbacks) -> None:
    text = "Вы были рядом с заболевшим. Сдайте тест, ёлки-палки!"
    assert gateway.send("+79161110002", text, "n-102").is_accepted
    assert _arrived(kannel, "79161110002") == [text]
    assert next(m for m in kannel.smsc.messages if m.recipient == "79161110002").data_coding == 0x08
    assert parse_kannel_dlr(callbacks.wait_for("/sms/dlr", lambda q: q.get("ref") == "n-102")).is_final


def test_long_cyrillic_sms_is_concatenated(kannel: KannelProcess, gateway: KannelGateway) -> None:
    text = "Уведомление о возможном контакте. " * 5
    assert sms_segments(text)[1] == 3
    assert gateway.send("+79161110003", text, "n-103").is_accepted
    assert _arrived(kannel, "79161110003") == [text]
    assert len(next(m for m in kannel.smsc.messages if m.recipient == "79161110003").message_ids) == 3


def test_undelivered_and_rejected_messages_report_failure(
    kannel: KannelProcess, gateway: KannelGateway, callbacks: Callbacks
) -> None:
    kannel.smsc.undeliverable.add("79161110004")
    kannel.smsc.rejected.add("79161110005")
    assert gateway.send("+79161110004", "hello", "n-104").is_accepted
    assert gateway.send("+79161110005", "hello", "n-105").is_accepted  # Kannel accepts, SMSC refuses
    undelivered = parse_kannel_dlr(callbacks.wait_for("/sms/dlr", lambda q: q.get("ref") == "n-104"))
    rejected = parse_kannel_dlr(callbacks.wait_for("/sms/dlr", lambda q: q.get("ref") == "n-105"))
    assert (undelivered.dlr_type, undelivered.status) == (2, DeliveryStatus.FAILED)
    assert (rejected.dlr_type, rejected.status) == (16, DeliveryStatus.FAILED)
    assert rejected.answer.startswith("NACK/")


def test_incoming_sms_is_forwarded_and_the_reply_is_not_sent_back(kannel: KannelProcess, callbacks: Callbacks) -> None:
    submitted_before = len(kannel.smsc.parts)
    kannel.smsc.deliver_mo("+79162220001", "7377", "123456789 Привет")
    kannel.smsc.deliver_mo("79162220002", "7377", "123456789 hello")
    cyrillic = callbacks.wait_for("/sms/incoming", lambda q: q.get("from") == "+79162220001")
    latin = callbacks.wait_for("/sms/incoming", lambda q: q.get("from") == "79162220002")
    assert (cyrillic["to"], cyrillic["text"], cyrillic["secret"]) == ("7377", "123456789 Привет", "mo-shared-secret")
    assert (latin["to"], latin["text"]) == ("7377", "123456789 hello")
    time.sleep(0.5)  # an automatic reply would reach the SMSC within milliseconds
    assert len(kannel.smsc.parts) == submitted_before


def test_send_many_submits_concurrently_and_keeps_order(kannel: KannelProcess, gateway: KannelGateway) -> None:
    items = [OutgoingSms(f"+7916333{i:04d}", f"Сообщение {i}", f"batch-{i}") for i in range(40)]
    items.insert(20, OutgoingSms("two numbers", "x", "batch-bad"))
    results = gateway.send_many(items)
    assert [r.outcome for r in results] == [SendOutcome.ACCEPTED] * 20 + [SendOutcome.PERMANENT_ERROR] + [
        SendOutcome.ACCEPTED
    ] * 20
    kannel.smsc.wait_until(lambda: sum(m.recipient.startswith("7916333") for m in kannel.smsc.messages) == 40)


def test_gateway_down_is_transient_and_sending_resumes_after_restart(
    kannel: KannelProcess, gateway: KannelGateway
) -> None:
    kannel.stop()
    try:
        down = gateway.send("+79164440001", "while down", "n-401")
        assert down.outcome is SendOutcome.TRANSIENT_ERROR and not down.in_doubt, down
    finally:
        kannel.start()
    assert gateway.send("+79164440001", "after restart", "n-402").is_accepted
    assert _arrived(kannel, "79164440001") == ["after restart"]
