"""French first, English available: one table of texts, and plain words for alerts.

The language comes from `?lang=`, then the `veille_lang` cookie, then Accept-Language;
French when nothing says otherwise. `evidence_words` turns an alert's evidence into a short
sentence a family member or a carer reads at a glance (never raw numbers streams).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

LANGS = ("fr", "en")
LANG_COOKIE = "veille_lang"

# key -> (French, English)
TEXTS: dict[str, tuple[str, str]] = {
    "app_title": ("Veille", "Veille"),
    "login_title": ("Connexion", "Sign in"),
    "login_pin": ("Code d'accès", "Access code"),
    "login_button": ("Entrer", "Sign in"),
    "login_wrong": ("Code incorrect.", "Wrong code."),
    "login_wait": (
        "Trop d'essais : réessayez dans {s} secondes.",
        "Too many attempts: try again in {s} seconds.",
    ),
    "login_locked": (
        "Trop d'essais : l'accès est bloqué pendant {m} minutes.",
        "Too many attempts: access is locked for {m} minutes.",
    ),
    "logout": ("Se déconnecter", "Sign out"),
    "all_well": ("Tout va bien", "All is well"),
    "all_well_sub": ("Aucune alerte en cours.", "No open alert."),
    "alert_open": ("Alerte en cours", "Open alert"),
    "taken_in_charge": ("Pris en charge", "Taken in charge"),
    "taken_by": ("pris en charge par {by}", "taken in charge by {by}"),
    "waiting_care": (
        "Le centre de coordination est prévenu ; en attente de prise en charge.",
        "The care centre has been told; waiting for someone to take it in charge.",
    ),
    "raised_at": ("depuis {t}", "since {t}"),
    "last_activity": ("Dernière activité", "Last activity"),
    "ago": ("il y a {d}", "{d} ago"),
    "no_activity_yet": ("Pas encore d'activité aujourd'hui.", "No activity yet today."),
    "in_room": ("{room}", "{room}"),
    "today": ("Aujourd'hui", "Today"),
    "today_vs_usual": (
        "{n} signe(s) d'activité aujourd'hui jusqu'ici ; "
        "une journée habituelle en compte environ {u}.",
        "{n} signs of activity so far today; a usual day has about {u}.",
    ),
    "today_count": (
        "{n} signe(s) d'activité aujourd'hui jusqu'ici.",
        "{n} sign(s) of activity so far today.",
    ),
    "timeline_caption": (
        "Activité par pièce et par heure aujourd'hui (plus foncé = plus d'activité).",
        "Activity per room and hour today (darker = more activity).",
    ),
    "days14": ("Les 14 derniers jours", "The last 14 days"),
    "days14_caption": (
        "Activité de chaque journée (barres) ; heure du lever (points).",
        "Each day's activity (bars); time of getting up (dots).",
    ),
    "no_days_yet": ("Pas encore de résumé de journée.", "No daily summary yet."),
    "hub_link": ("Liaison avec le centre", "Link to the care centre"),
    "hub_ok": ("connectée", "connected"),
    "hub_down": (
        "coupée (les alertes attendent et partiront au retour)",
        "down (alerts wait and go when it is back)",
    ),
    "sensors": ("Capteurs", "Sensors"),
    "sensors_ok": ("Tous les capteurs répondent.", "All sensors answer."),
    "battery_low": ("pile faible ({pct} %)", "battery low ({pct} %)"),
    "battery_low_nopct": ("pile faible", "battery low"),
    "silent": ("ne répond plus depuis {d}", "silent for {d}"),
    "silent_never": ("ne s'est jamais manifesté", "never heard from"),
    "updated": ("Mis à jour à {t}", "Updated at {t}"),
    "big_text": ("Grands caractères", "Large text"),
    "contrast": ("Contraste élevé", "High contrast"),
    "language": ("English", "Français"),
    "installer": ("Installation", "Installation"),
    "home": ("Logement", "Home"),
    "rooms": ("Pièces", "Rooms"),
    "devices": ("Appareils", "Devices"),
    "contacts": ("Contacts", "Contacts"),
    "thresholds": ("Seuils", "Thresholds"),
    "save": ("Enregistrer", "Save"),
    "add": ("Ajouter", "Add"),
    "delete": ("Supprimer", "Delete"),
    "name": ("Nom", "Name"),
    "kind": ("Type", "Kind"),
    "room": ("Pièce", "Room"),
    "role": ("Rôle", "Role"),
    "phone": ("Téléphone", "Phone"),
    "relation": ("Lien", "Relation"),
    "pairing": ("Appairage Zigbee", "Zigbee pairing"),
    "permit_join": ("Autoriser l'appairage (4 min)", "Permit joining (4 min)"),
    "permit_join_sent": (
        "Appairage autorisé pendant 4 minutes.",
        "Joining permitted for 4 minutes.",
    ),
    "no_local": ("Le courtier local n'est pas joignable.", "The local broker is not reachable."),
    "bridge_devices": ("Appareils connus de Zigbee2MQTT", "Devices known to Zigbee2MQTT"),
    "join_events": ("Événements d'appairage", "Pairing events"),
    "interview_ok": ("interrogé", "interviewed"),
    "interview_pending": ("interrogation en cours", "interview pending"),
    "registered": ("enregistré", "registered"),
    "ble": ("Appareils Bluetooth à proximité", "Bluetooth devices nearby"),
    "signal": ("Signal", "Signal"),
    "bindkey": ("Clé BTHome", "BTHome key"),
    "bind": ("Associer", "Bind"),
    "none_heard": ("Aucun appareil entendu pour l'instant.", "No device heard yet."),
    "walkthrough": ("Test de parcours", "Walk-through test"),
    "walk_start": ("Commencer le test", "Start the test"),
    "walk_help": (
        "Faites agir chaque capteur : il passe au vert dès que son signal arrive.",
        "Make each sensor act: it turns green as soon as its signal arrives.",
    ),
    "walk_waiting": ("en attente", "waiting"),
    "walk_ok": ("reçu", "received"),
    "walk_wearer": ("Portez le capteur, marchez quelques pas", "Wear the sensor, walk a few steps"),
    "walk_upright": (
        "verticale trouvée : capteur tourné de {deg}° par rapport à sa position de référence",
        "upright found: sensor turned {deg}° from its reference position",
    ),
    "report": ("Rapport d'installation", "Installation report"),
    "print": ("Imprimer", "Print"),
    "battery": ("Pile", "Battery"),
    "test_result": ("Test", "Test"),
    "not_tested": ("non testé", "not tested"),
    "status_page": ("Page d'état", "Status page"),
    "saved": ("Enregistré.", "Saved."),
    "error": ("Erreur", "Error"),
    "never": ("jamais", "never"),
    # care console
    "console": ("Console des soignants", "Care console"),
    "staff_name": ("Votre nom", "Your name"),
    "password": ("Mot de passe", "Password"),
    "inbox": ("Alertes ouvertes", "Open alerts"),
    "inbox_empty": ("Aucune alerte ouverte.", "No open alert."),
    "acknowledge": ("Prendre en charge", "Take in charge"),
    "resolve": ("Clore", "Resolve"),
    "note": ("Note", "Note"),
    "escalated": ("Relancée", "Escalated"),
    "offline_gateways": ("Passerelles hors ligne", "Gateways offline"),
    "all_online": ("Toutes les passerelles sont en ligne.", "All gateways are online."),
    "homes": ("Logements", "Homes"),
    "recent_context": ("Contexte récent", "Recent context"),
    "weeks_plot": ("Activité quotidienne sur plusieurs semaines", "Daily activity over weeks"),
    "history": ("Historique des alertes", "Alert history"),
    "back": ("Retour", "Back"),
    "online": ("en ligne", "online"),
    "offline": ("hors ligne", "offline"),
    "since": ("depuis {t}", "since {t}"),
}

ALERT_NAMES: dict[str, tuple[str, str]] = {
    "fall": ("Chute détectée", "Fall detected"),
    "sos": ("Appel à l'aide (bouton)", "Call for help (button)"),
    "inactivity": ("Inactivité inhabituelle", "Unusual inactivity"),
    "night_exit": ("Sortie nocturne sans retour", "Night exit without return"),
    "bathroom_long": ("Long séjour à la salle de bain", "Long stay in the bathroom"),
    "no_morning_activity": ("Pas d'activité ce matin", "No activity this morning"),
    "temperature": ("Température anormale", "Abnormal temperature"),
    "sensor_offline": ("Capteur silencieux", "Sensor silent"),
    "low_battery": ("Pile faible", "Low battery"),
    "water_leak": ("Fuite d'eau", "Water leak"),
}

SEVERITY_NAMES: dict[str, tuple[str, str]] = {
    "critical": ("critique", "critical"),
    "high": ("élevée", "high"),
    "warning": ("attention", "warning"),
    "info": ("information", "information"),
}

STATE_NAMES: dict[str, tuple[str, str]] = {
    "raised": ("en attente de prise en charge", "waiting to be taken in charge"),
    "acknowledged": ("pris en charge", "taken in charge"),
    "cancelled": ("annulée", "cancelled"),
    "resolved": ("close", "resolved"),
}

ROOM_KIND_NAMES: dict[str, tuple[str, str]] = {
    "bedroom": ("chambre", "bedroom"),
    "bathroom": ("salle de bain", "bathroom"),
    "kitchen": ("cuisine", "kitchen"),
    "living": ("séjour", "living room"),
    "entrance": ("entrée", "entrance"),
    "other": ("autre", "other"),
}

ROLE_PROMPTS: dict[str, tuple[str, str]] = {
    "motion": ("Passez devant le détecteur ({room})", "Walk past the detector ({room})"),
    "presence": ("Entrez dans la pièce ({room})", "Walk into the room ({room})"),
    "door_entrance": ("Ouvrez la porte d'entrée", "Open the front door"),
    "door_fridge": ("Ouvrez le réfrigérateur", "Open the fridge"),
    "door": ("Ouvrez la porte ({room})", "Open the door ({room})"),
    "bed": ("Asseyez-vous sur le lit", "Sit on the bed"),
    "chair": ("Asseyez-vous dans le fauteuil", "Sit in the chair"),
    "sos_button": ("Appuyez sur le bouton d'appel", "Press the call button"),
    "wearable": ("Secouez le bracelet", "Shake the wearable"),
    "temperature": ("Attendez une mesure de température", "Wait for a temperature reading"),
    "water_leak": (
        "Touchez le détecteur de fuite avec un doigt humide",
        "Touch the leak sensor with a wet finger",
    ),
    "power": ("Allumez l'appareil branché", "Switch the plugged appliance on"),
    "toilet_flush": ("Tirez la chasse d'eau", "Flush the toilet"),
    "light_switch": ("Allumez la lumière ({room})", "Switch the light on ({room})"),
}


def pick_lang(query: str | None, cookie: str | None, accept: str | None) -> str:
    """The page language: `?lang=`, then the cookie, then Accept-Language; French by default."""
    for choice in (query, cookie):
        if choice in LANGS:
            return str(choice)
    for part in (accept or "").split(","):
        code = part.split(";")[0].strip().lower()[:2]
        if code in LANGS:
            return code
    return "fr"


def _pick(pair: tuple[str, str] | None, lang: str, fallback: str) -> str:
    if pair is None:
        return fallback
    return pair[1] if lang == "en" else pair[0]


def t(key: str, lang: str, **kw: Any) -> str:
    text = _pick(TEXTS.get(key), lang, key)
    return text.format(**kw) if kw else text


def alert_name(kind: str, lang: str) -> str:
    return _pick(ALERT_NAMES.get(kind), lang, kind)


def severity_name(sev: str, lang: str) -> str:
    return _pick(SEVERITY_NAMES.get(sev), lang, sev)


def state_name(state: str, lang: str) -> str:
    return _pick(STATE_NAMES.get(state), lang, state)


def room_kind_name(kind: str, lang: str) -> str:
    return _pick(ROOM_KIND_NAMES.get(kind), lang, kind)


def role_prompt(role: str, room: str | None, lang: str) -> str:
    return _pick(ROLE_PROMPTS.get(role), lang, role).format(room=room or "")


def number(value: float, lang: str, digits: int = 1) -> str:
    text = f"{value:.{digits}f}".rstrip("0").rstrip(".") if digits else f"{value:.0f}"
    return text.replace(".", ",") if lang == "fr" else text


def duration(seconds: float, lang: str) -> str:
    """`12 min`, `3 h 05`, `2 jours` / `2 days`."""
    seconds = max(0.0, seconds)
    minutes = int(seconds // 60)
    if minutes < 1:
        return "moins d'une minute" if lang == "fr" else "less than a minute"
    if minutes < 60:
        return f"{minutes} min"
    hours, rest = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {rest:02d}"
    days = hours // 24
    return f"{days} jours" if lang == "fr" else f"{days} days"


def clock_time(at: float, tz: dt.tzinfo, now: float | None = None, lang: str = "fr") -> str:
    """`14:05`, or `hier 14:05` / `12/03 14:05` when not today."""
    local = dt.datetime.fromtimestamp(at, tz)
    text = local.strftime("%H:%M")
    if now is None:
        return text
    today = dt.datetime.fromtimestamp(now, tz).date()
    if local.date() == today:
        return text
    if local.date() == today - dt.timedelta(days=1):
        return ("hier " if lang == "fr" else "yesterday ") + text
    return local.strftime("%d/%m ") + text


# evidence key -> (French, English) phrase with {v}; booleans have their own phrase pairs
_EVIDENCE: dict[str, tuple[str, str]] = {
    "peak_g": ("choc de {v} g", "impact of {v} g"),
    "score": ("certitude du modèle {pct} %", "model confidence {pct} %"),
    "inactive_min": ("aucun mouvement depuis {v} min", "no movement for {v} min"),
    "usual_max_min": ("d'habitude au plus {v} min", "usually at most {v} min"),
    "silent_min": ("silencieux depuis {v} min", "silent for {v} min"),
    "battery": ("pile à {v} %", "battery at {v} %"),
    "battery_pct": ("pile à {v} %", "battery at {v} %"),
    "temperature_c": ("{v} °C", "{v} °C"),
    "confirm_s": ("confirmé après {v} s", "confirmed after {v} s"),
    "button": ("bouton : {v}", "button: {v}"),
    "posture": ("posture : {v}", "posture: {v}"),
    "cancelled_by": ("annulée par {v}", "cancelled by {v}"),
    "by": ("par {v}", "by {v}"),
    "check_in_at": ("question posée à {v}", "asked at {v}"),
    "check_in_limit_min": ("question après {v} min", "asked after {v} min"),
}
_CHECK_IN: dict[str, tuple[str, str]] = {
    "unanswered": (
        "la personne n'a pas répondu à la question « ça va ? »",
        "the resident did not answer the check-in",
    ),
}
_EVIDENCE_BOOL: dict[str, tuple[tuple[str, str], tuple[str, str]]] = {
    # key -> (phrase when true, phrase when false)
    "movement_resumed": (
        ("mouvement repris ensuite", "movement resumed afterwards"),
        ("pas de mouvement depuis", "no movement since"),
    ),
    "help_pressed": (("bouton d'aide pressé", "help button pressed"), ("", "")),
    "off_furniture": (("hors du lit et du fauteuil", "off the bed and the chair"), ("", "")),
    "wet": (("capteur mouillé", "sensor wet"), ("capteur sec", "sensor dry")),
    "battery_low": (
        ("pile faible signalée", "battery reported low"),
        ("pile correcte", "battery fine"),
    ),
    "learning": (("apprentissage en cours", "still learning"), ("", "")),
}
_BUTTON_PRESSES: dict[str, tuple[str, str]] = {
    "single": ("appui simple", "single press"),
    "double": ("double appui", "double press"),
    "long": ("appui long", "long press"),
    "hold": ("appui long", "long press"),
}
_POSTURES: dict[str, tuple[str, str]] = {
    "lying": ("personne allongée", "person lying down"),
    "upright": ("personne debout", "person upright"),
    "sitting": ("personne assise", "person sitting"),
}


def evidence_words(evidence: Mapping[str, Any], lang: str) -> str:
    """`choc de 3,4 g, personne allongée, pas de mouvement depuis` (small, plain words)."""
    parts: list[str] = []
    for key, value in evidence.items():
        if isinstance(value, bool) and key in _EVIDENCE_BOOL:
            phrase = _pick(_EVIDENCE_BOOL[key][0 if value else 1], lang, "")
        elif key == "posture" and isinstance(value, str) and value in _POSTURES:
            phrase = _pick(_POSTURES[value], lang, value)
        elif key == "check_in" and isinstance(value, str) and value in _CHECK_IN:
            phrase = _pick(_CHECK_IN[value], lang, value)
        elif key == "button" and isinstance(value, str) and value in _BUTTON_PRESSES:
            phrase = _pick(_BUTTON_PRESSES[value], lang, value)
        elif key == "score" and isinstance(value, int | float):
            phrase = _pick(_EVIDENCE["score"], lang, "").format(pct=round(float(value) * 100))
        elif (
            key in _EVIDENCE
            and isinstance(value, int | float | str)
            and not isinstance(value, bool)
        ):
            shown = number(float(value), lang) if isinstance(value, int | float) else value
            phrase = _pick(_EVIDENCE[key], lang, "").format(v=shown)
        elif isinstance(value, int | float | str | bool) and value != "":
            shown = (
                number(float(value), lang)
                if isinstance(value, int | float) and not isinstance(value, bool)
                else str(value)
            )
            phrase = (
                f"{key.replace('_', ' ')} : {shown}"
                if lang == "fr"
                else f"{key.replace('_', ' ')}: {shown}"
            )
        else:
            phrase = ""
        if phrase:
            parts.append(phrase)
    return ", ".join(parts)
