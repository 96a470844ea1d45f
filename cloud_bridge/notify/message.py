"""What a person reads: one alert, named the way care staff know the home, in plain French.

`Notice` gathers what a notification says (built by the hub from the alert and its home
directory card); `subject`, `text` and `html` render it for a mail, `short` for a phone's
push notification. Pure: no I/O, times are given.
"""

from __future__ import annotations

import datetime as dt
import html as html_lib
from dataclasses import dataclass
from zoneinfo import ZoneInfo

TIME_ZONE = "Europe/Paris"

ALERT_LABELS_FR = {
    "fall": "Chute détectée",
    "sos": "Appel d'urgence (bouton SOS)",
    "inactivity": "Inactivité inhabituelle",
    "night_exit": "Sortie du logement la nuit",
    "bathroom_long": "Présence prolongée dans la salle de bains",
    "no_morning_activity": "Aucune activité ce matin",
    "temperature": "Température anormale dans le logement",
    "water_leak": "Fuite d'eau",
    "sensor_offline": "Capteur hors ligne",
    "low_battery": "Pile faible",
}
SEVERITY_LABELS_FR = {
    "critical": "critique",
    "high": "élevée",
    "warning": "avertissement",
    "info": "information",
}


@dataclass(frozen=True, slots=True)
class Notice:
    """One alert as a notification tells it."""

    alert_id: str
    home_id: str
    alert_type: str
    severity: str
    raised_at: str  # UTC ISO-8601, as on the wire
    resident: str = ""  # from the home directory; "" = not known yet
    address: str = ""
    phone: str = ""
    access: str = ""  # key box, door code... (never sent to the gateway)
    room: str | None = None
    ack_url: str = ""  # the one-click acknowledgement page; "" = none
    attempt: int = 0  # > 0: a reminder

    @property
    def home_label(self) -> str:
        return self.resident or f"logement {self.home_id}"

    @property
    def what(self) -> str:
        return ALERT_LABELS_FR.get(self.alert_type, f"Alerte « {self.alert_type} »")


def local_time(iso_utc: str, zone: str = TIME_ZONE) -> str:
    """`2026-12-01T21:10:05Z` -> `le 01/12/2026 à 22:10` (the homes' local time)."""
    when = dt.datetime.fromisoformat(iso_utc.replace("Z", "+00:00")).astimezone(ZoneInfo(zone))
    return f"le {when:%d/%m/%Y} à {when:%H:%M}"


def subject(notice: Notice) -> str:
    prefix = "[Rappel] " if notice.attempt else ""
    return f"{prefix}{notice.what} : {notice.home_label}"


def short(notice: Notice) -> str:
    """One or two lines for a phone's notification."""
    room = f" ({notice.room})" if notice.room else ""
    return f"{notice.what}{room}, {local_time(notice.raised_at)}."


def _lines(notice: Notice) -> list[tuple[str, str]]:
    severity = SEVERITY_LABELS_FR.get(notice.severity, notice.severity)
    rows = [
        ("Alerte", notice.what),
        ("Gravité", severity),
        ("Personne", notice.home_label),
        ("Adresse", notice.address),
        ("Téléphone", notice.phone),
        ("Accès", notice.access),
        ("Pièce", notice.room or ""),
        ("Déclenchée", local_time(notice.raised_at)),
        ("Référence", f"{notice.home_id} / {notice.alert_id}"),
    ]
    return [(k, v) for k, v in rows if v]


def text(notice: Notice) -> str:
    """The plain-text body."""
    body = [f"{notice.what} chez {notice.home_label}.", ""]
    body += [f"{key} : {value}" for key, value in _lines(notice)]
    body.append("")
    if notice.ack_url:
        body += ["Pour prendre en charge cette alerte, ouvrez ce lien :", notice.ack_url, ""]
    body.append("Tant que personne ne prend l'alerte en charge, la chaîne d'alerte continue.")
    return "\n".join(body) + "\n"


def html(notice: Notice) -> str:
    """A simple HTML body (the same content as `text`)."""
    esc = html_lib.escape
    rows = "".join(
        f'<tr><th align="left">{esc(k)}</th><td>{esc(v)}</td></tr>' for k, v in _lines(notice)
    )
    link = (
        f'<p><a href="{esc(notice.ack_url)}">Prendre en charge cette alerte</a></p>'
        if notice.ack_url
        else ""
    )
    return (
        '<!doctype html><html lang="fr"><body>'
        f"<h1>{esc(notice.what)} chez {esc(notice.home_label)}</h1>"
        f"<table>{rows}</table>{link}"
        "<p>Tant que personne ne prend l'alerte en charge, la chaîne d'alerte continue.</p>"
        "</body></html>"
    )
