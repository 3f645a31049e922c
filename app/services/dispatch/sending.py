"""Where claimed messages go: the channels a batch is submitted through, by message channel."""

from __future__ import annotations

import time as time_module
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from app.models import MessageChannel
from app.services.channels import (
    SMS_HTTP_TIMEOUT,
    AttemptResult,
    Outgoing,
    build_sms_gateway,
    send_emails,
    send_sms,
    send_to_log,
)
from app.services.dispatch.settings import DispatchSettings
from app.services.sms_gateways import SmsGateway

# Kept free at the end of a claim: a request in flight may still take 2 x the gateway timeout, and
# recording the answers must happen before the claim expires and the message turns `unconfirmed`.
CLAIM_MARGIN_SECONDS = 2 * SMS_HTTP_TIMEOUT + 10.0


@dataclass
class Channels:
    """Where claimed messages go; built once per job run so HTTP connections are kept alive."""

    config: Any
    sms_gateway: SmsGateway | None = None

    def submit(self, messages: Sequence[Outgoing], claimed_until: float | None = None) -> list[AttemptResult]:
        """Send a claimed batch; `claimed_until` (time.monotonic) is when its claim expires: SMS not
        started in time are left for a later round rather than sent while the claim lapses."""
        start_within = None if claimed_until is None else claimed_until - time_module.monotonic() - CLAIM_MARGIN_SECONDS
        results: dict[int, AttemptResult] = {}
        by_channel: dict[MessageChannel, list[Outgoing]] = {}
        for message in messages:
            by_channel.setdefault(message.channel, []).append(message)
        for channel, group in by_channel.items():
            if channel is MessageChannel.SMS:
                answers = send_sms(self.sms_gateway, group, start_within)
            elif channel is MessageChannel.EMAIL:
                answers = send_emails(self.config, group)
            else:
                answers = send_to_log(group)
            results.update(zip((m.id for m in group), answers, strict=True))
        return [results[m.id] for m in messages]

    def close(self) -> None:
        if self.sms_gateway is not None:
            self.sms_gateway.close()


def build_channels(config: Any) -> Channels:
    settings = DispatchSettings.from_config(config)
    return Channels(config, build_sms_gateway(config, settings.concurrency))
