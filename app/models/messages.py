"""The durable outbox of every outgoing message (SMS, e-mail, log)."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import ForeignKey, Index, LargeBinary, SmallInteger, String, Text, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, utcnow
from app.models.types import str_enum


class MessageChannel(enum.StrEnum):
    SMS = "sms"
    EMAIL = "email"
    LOG = "log"


class MessageStatus(enum.StrEnum):
    PENDING = "pending"  # waiting for its next attempt (or for morning)
    SENDING = "sending"  # claimed by a dispatcher; a submit may be in flight
    SENT = "sent"  # accepted by the gateway
    # The request reached the gateway but its answer was lost (read timeout, dispatcher crash):
    # it may or may not have been taken, so it is never re-sent automatically. A delivery report
    # settles it; an operator may re-queue it deliberately (`checkin outbox retry-failed --unconfirmed`).
    UNCONFIRMED = "unconfirmed"
    DELIVERED = "delivered"  # the gateway's delivery report says it arrived
    FAILED = "failed"  # permanent failure or out of attempts
    CANCELLED = "cancelled"  # withdrawn before sending (stop switch, annulled case)


class MessageKind(enum.StrEnum):
    OTP = "otp"
    CONFIRMATION = "confirmation"
    NOTICE = "notice"
    RETRACTION = "retraction"
    ALERT = "alert"


class OutboxMessage(Base):
    """A message written in the same transaction as the change that caused it, sent afterwards."""

    __tablename__ = "outbox_messages"
    __table_args__ = (
        UniqueConstraint("dedup_key", name="uq_outbox_messages_dedup_key"),
        # The dispatcher's claim walks this in its ORDER BY (priority, then due time) and stops after
        # one batch; only pending rows are in it, however many sent ones the table keeps.
        Index(
            "ix_outbox_messages_due",
            "priority",
            "next_attempt_at",
            postgresql_where=text("status = 'pending'"),
            sqlite_where=text("status = 'pending'"),
        ),
        # Claims whose dispatcher died: a handful of rows, found without scanning the table.
        Index(
            "ix_outbox_messages_claimed_until",
            "claimed_until",
            postgresql_where=text("status = 'sending'"),
            sqlite_where=text("status = 'sending'"),
        ),
        Index("ix_outbox_messages_created_at", "created_at"),
        Index("ix_outbox_messages_gateway_ref", "gateway_ref"),
        # Erasing a person deletes every SMS to their number, also those queued before they had an
        # account (a reply to a text from an unknown number names no person).
        Index("ix_outbox_messages_recipient_hash", "recipient_hash"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    dedup_key: Mapped[str] = mapped_column(String(120))
    channel: Mapped[MessageChannel] = mapped_column(str_enum(MessageChannel, "message_channel"))
    kind: Mapped[MessageKind] = mapped_column(str_enum(MessageKind, "message_kind"))
    person_id: Mapped[int | None] = mapped_column(ForeignKey("people.id", ondelete="SET NULL"), index=True)
    # The address, encrypted (or sealed to the dispatcher's key); never stored in clear.
    recipient_enc: Mapped[bytes] = mapped_column(LargeBinary)
    # An SMS recipient's keyed hash, the same as the person's phone_hash (people.phone_lookup).
    recipient_hash: Mapped[bytes | None] = mapped_column(LargeBinary(32))
    recipient_timezone: Mapped[str] = mapped_column(String(64), default="Europe/Moscow")
    subject: Mapped[str] = mapped_column(String(200), default="")
    body: Mapped[str] = mapped_column(Text)
    priority: Mapped[int] = mapped_column(SmallInteger, default=5)  # lower goes first; codes are 0
    status: Mapped[MessageStatus] = mapped_column(
        str_enum(MessageStatus, "message_status"), default=MessageStatus.PENDING
    )
    attempts: Mapped[int] = mapped_column(SmallInteger, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    claimed_until: Mapped[datetime | None]
    gateway_ref: Mapped[str | None] = mapped_column(String(64))
    last_error: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    sent_at: Mapped[datetime | None]
    delivered_at: Mapped[datetime | None]
    notice_id: Mapped[int | None] = mapped_column(ForeignKey("notices.id", ondelete="SET NULL"), index=True)
