"""The outbox dispatcher: sends committed messages through their channels.

One batch is three steps:

1. Claim (transaction 1, committed before any network call): due pending rows, lowest priority
   value first, are locked with SELECT ... FOR UPDATE SKIP LOCKED on PostgreSQL (several
   dispatchers share the work without waiting on each other), SMS in the recipient's quiet hours
   are moved to the morning instead, and the rest become `sending` with `claimed_until` and our
   reference `m<id>` (which Kannel echoes back in delivery reports). Only committed rows are ever
   seen here, so a rolled-back change never sends its message.
2. Submit, with no transaction open.
3. Record (transaction 2): accepted -> `sent`; certainly not taken (refused connection, "try
   later") -> `pending` again after an exponential backoff with jitter, or `failed` once
   DISPATCH_MAX_ATTEMPTS are used; permanent (invalid number) -> `failed` at once; in doubt ->
   `unconfirmed`.

Delivery guarantee, chosen deliberately: a message is re-sent only when we know the gateway did not
take it. Where the request went out but its answer was lost (read timeout, connection dropped,
or a dispatcher that died between claim and record, whose claim then expires), the message may
already be on its way: it becomes `unconfirmed` and is not re-sent automatically (at most once).
A delivery report for its reference settles it (`delivered`/`failed`/`sent`); an operator can re-queue
the rest deliberately with `checkin outbox retry-failed --unconfirmed` (at least once, by choice).

- settings: the dispatcher's settings and the tally of a run;
- sending: the channels a claimed batch is submitted through;
- claiming: transaction 1, expired claims recovered and due messages claimed;
- recording: transaction 2, the gateway's answers turned into statuses;
- running: one batch, the pipelined job, and its schedule.
"""

from app.services.dispatch.claiming import (
    ANSWERS_EXEMPT_WHILE,
    HELD_WHEN_HALTED,
    QUIET_HOURS_EXEMPT,
    claim_due,
    notices_halted,
    recover_expired_claims,
    reference_for,
)
from app.services.dispatch.recording import BACKOFF_BASE, BACKOFF_CAP, RECORD_ATTEMPTS, backoff_delay, record_outcomes
from app.services.dispatch.running import JOB_TIME_BUDGET_SECONDS, JOBS, dispatch_once, run_dispatcher
from app.services.dispatch.sending import CLAIM_MARGIN_SECONDS, Channels, build_channels
from app.services.dispatch.settings import DispatchSettings, DispatchSummary

__all__ = [
    "ANSWERS_EXEMPT_WHILE",
    "BACKOFF_BASE",
    "BACKOFF_CAP",
    "CLAIM_MARGIN_SECONDS",
    "HELD_WHEN_HALTED",
    "JOBS",
    "JOB_TIME_BUDGET_SECONDS",
    "QUIET_HOURS_EXEMPT",
    "RECORD_ATTEMPTS",
    "Channels",
    "DispatchSettings",
    "DispatchSummary",
    "backoff_delay",
    "build_channels",
    "claim_due",
    "dispatch_once",
    "notices_halted",
    "record_outcomes",
    "recover_expired_claims",
    "reference_for",
    "run_dispatcher",
]
