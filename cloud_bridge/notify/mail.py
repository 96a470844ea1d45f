"""The email channel: one alert, one mail, over SMTP (smtp:// + STARTTLS, or smtps://).

STARTTLS is used when the server offers it (`starttls = "auto"`), refused to go on without
it when `starttls = "require"`, never tried with `"never"`. A login is made only over an
encrypted link. smtplib is blocking, so the send runs in a worker thread. Any failure comes
out as one `ChannelError` naming the channel and the reason.
"""

from __future__ import annotations

import asyncio
import logging
import smtplib
import ssl
from email.message import EmailMessage
from email.utils import formatdate, make_msgid

from cloud_bridge.notify import message
from cloud_bridge.notify.config import EmailChannel
from cloud_bridge.notify.errors import ChannelError
from cloud_bridge.notify.message import Notice

_LOGGER = logging.getLogger(__name__)


def build(channel: EmailChannel, notice: Notice) -> EmailMessage:
    """The mail: French plain text with a simple HTML alternative."""
    mail = EmailMessage()
    mail["From"] = channel.sender
    mail["To"] = ", ".join(channel.to)
    mail["Subject"] = message.subject(notice)
    mail["Date"] = formatdate(localtime=False)
    mail["Message-ID"] = make_msgid(domain=channel.sender.rsplit("@", 1)[1])
    mail["X-Veille-Alert"] = notice.alert_id
    mail.set_content(message.text(notice))
    mail.add_alternative(message.html(notice), subtype="html")
    return mail


def _tls_context(channel: EmailChannel) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(channel.ca_file) if channel.ca_file else None)


def send_sync(channel: EmailChannel, mail: EmailMessage) -> None:
    """Deliver `mail` (blocking); ChannelError when it could not be."""
    try:
        if channel.tls:
            smtp: smtplib.SMTP = smtplib.SMTP_SSL(
                channel.host,
                channel.port,
                timeout=channel.timeout_s,
                context=_tls_context(channel),
            )
        else:
            smtp = smtplib.SMTP(channel.host, channel.port, timeout=channel.timeout_s)
        with smtp:
            smtp.ehlo()
            encrypted = channel.tls
            if not encrypted and channel.starttls != "never":
                if smtp.has_extn("starttls"):
                    smtp.starttls(context=_tls_context(channel))
                    smtp.ehlo()
                    encrypted = True
                elif channel.starttls == "require":
                    raise ChannelError(channel.name, "the server does not offer STARTTLS")
            if channel.user:
                if not encrypted:
                    raise ChannelError(channel.name, "no login over an unencrypted link")
                smtp.login(channel.user, channel.password or "")
            refused = smtp.send_message(mail)
    except ChannelError:
        raise
    except smtplib.SMTPAuthenticationError as exc:
        raise ChannelError(channel.name, f"login refused ({exc.smtp_code})") from exc
    except smtplib.SMTPRecipientsRefused as exc:
        raise ChannelError(
            channel.name, f"all recipients refused: {sorted(exc.recipients)}"
        ) from exc
    except (smtplib.SMTPException, OSError) as exc:
        raise ChannelError(
            channel.name, f"cannot send through {channel.host}:{channel.port}: {exc!r}"
        ) from exc
    if refused:
        _LOGGER.warning("email %s: some recipients refused: %s", channel.name, sorted(refused))


async def send(channel: EmailChannel, notice: Notice) -> None:
    """Mail `notice` to the channel's recipients; ChannelError if it did not go."""
    mail = build(channel, notice)
    await asyncio.to_thread(send_sync, channel, mail)
    _LOGGER.info(
        "email %s: alert %s mailed to %d recipient(s)",
        channel.name,
        notice.alert_id,
        len(channel.to),
    )
