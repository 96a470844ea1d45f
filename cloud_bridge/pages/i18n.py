"""French first, English available: one table of texts, and plain words for alerts.

The language comes from `?lang=`, then the `veille_lang` cookie, then Accept-Language;
French when nothing says otherwise. `evidence_words` turns an alert's evidence into a short
sentence a family member or a carer reads at a glance (never raw numbers streams).
"""

from __future__ import annotations

import datetime as dt
import re
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
    "login_wait_one": (
        "Trop d'essais : réessayez dans {s} seconde.",
        "Too many attempts: try again in {s} second.",
    ),
    "login_expired": (
        "Votre session a expiré ou n'est plus valable : entrez de nouveau votre code.",
        "Your session has expired or is no longer valid: enter your code again.",
    ),
    "login_family_code": (
        "Ce code ouvre la page de la famille, pas l'installation. "
        "Pour l'installation, entrez le code de l'installateur.",
        "This code opens the family's page, not the installation. "
        "For the installation, enter the installer's code.",
    ),
    "go_family": ("Aller à la page de la famille", "Go to the family's page"),
    "login_locked": (
        "Trop d'essais : l'accès est bloqué pendant {m} minutes.",
        "Too many attempts: access is locked for {m} minutes.",
    ),
    "login_locked_one": (
        "Trop d'essais : l'accès est bloqué pendant {m} minute.",
        "Too many attempts: access is locked for {m} minute.",
    ),
    "logout": ("Se déconnecter", "Sign out"),
    "push_nav": ("Alertes sur ce téléphone", "Alerts on this phone"),
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
    "summary_date": ("Date", "Date"),
    "summary_activity": ("Activité", "Activity"),
    "summary_get_up": ("Lever", "Got up"),
    "summary_bed": ("Coucher", "Went to bed"),
    "summary_in_bed": ("Au lit (min)", "In bed (min)"),
    "summary_bathroom": ("Salle de bain la nuit", "Bathroom at night"),
    "summary_out": ("Dehors (min)", "Out (min)"),
    "today": ("Aujourd'hui", "Today"),
    "today_vs_usual": (
        "{n} signes d'activité aujourd'hui jusqu'ici ; "
        "une journée habituelle en compte environ {u}.",
        "{n} signs of activity so far today; a usual day has about {u}.",
    ),
    "today_vs_usual_one": (
        "{n} signe d'activité aujourd'hui jusqu'ici ; "
        "une journée habituelle en compte environ {u}.",
        "{n} sign of activity so far today; a usual day has about {u}.",
    ),
    "today_count": (
        "{n} signes d'activité aujourd'hui jusqu'ici.",
        "{n} signs of activity so far today.",
    ),
    "today_count_one": (
        "{n} signe d'activité aujourd'hui jusqu'ici.",
        "{n} sign of activity so far today.",
    ),
    "status_of": ("Chez {name}", "{name}'s home"),
    "taken_means": (
        "« Pris en charge » : un membre de l'équipe de soins a vu l'alerte et s'en occupe.",
        "“Taken in charge”: a member of the care team has seen the alert and is dealing with it.",
    ),
    "whom_to_call": ("Qui appeler", "Whom to call"),
    "whom_to_call_sub": (
        "En cas de doute, appelez l'une de ces personnes.",
        "If in doubt, call one of these people.",
    ),
    "no_contacts": (
        "Aucun contact enregistré : demandez à l'installateur d'en ajouter.",
        "No contact recorded: ask the installer to add one.",
    ),
    "get_up_axis": ("Heure du lever", "Time of getting up"),
    "activity_axis": ("Activité", "Activity"),
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
    "gateway_link": ("Passerelle du logement", "The home's gateway"),
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
    "timezone": ("Fuseau horaire", "Time zone"),
    "device_name_help": (
        "Son nom dans Zigbee2MQTT ; écrit pour des personnes (« lampe du salon »), "
        "il s'affiche aussi sur les pages.",
        "Its name in Zigbee2MQTT; written for people (“living room lamp”), "
        "it is also shown on the pages.",
    ),
    "resident": ("Personne accompagnée", "Resident"),
    "address": ("Adresse", "Address"),
    "installer_name": ("Installateur", "Installer"),
    "date": ("Date", "Date"),
    "identifier": ("Identifiant", "Identifier"),
    "source": ("Liaison", "Link"),
    "signature": ("Signature de l'installateur", "Installer's signature"),
    "signature_resident": (
        "Signature de la personne accompagnée ou de son représentant",
        "Signature of the resident or their representative",
    ),
    "checklist": ("Points à vérifier", "Points to check"),
    "silent_flag": ("ne répond pas", "not answering"),
    "threshold_range": ("de {low} à {high} {unit}", "from {low} to {high} {unit}"),
    "threshold_bad": (
        "« {label} » doit être un nombre entre {low} et {high} {unit}.",
        "“{label}” must be a number between {low} and {high} {unit}.",
    ),
    "threshold_order": (
        "La température basse doit être inférieure à la température haute.",
        "The low temperature must be below the high temperature.",
    ),
    "pair_left": ("Appairage ouvert encore {s} s", "Joining open for {s} s more"),
    "pair_closed": ("Appairage fermé.", "Joining closed."),
    "none_joined": (
        "Aucun nouvel appareil pour l'instant : mettez-le en mode appairage.",
        "No new device yet: put it in pairing mode.",
    ),
    "joined_live": ("Appareils arrivés", "Devices that joined"),
    "walk_count": ("{done} / {total} capteurs testés", "{done} / {total} sensors tested"),
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
    "ble_sensor": ("capteur Bluetooth (BTHome)", "Bluetooth sensor (BTHome)"),
    "ble_wearable": ("capteur porté", "wearable sensor"),
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
    "last_seen": ("Dernier message", "Last message"),
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
    "context_day": ("{day} : {n} signes d'activité", "{day}: {n} signs of activity"),
    "context_day_one": ("{day} : {n} signe d'activité", "{day}: {n} sign of activity"),
    "context_get_up": (", premier lever à {t}", ", first up at {t}"),
    "context_alerts": ("{n} alertes au total", "{n} alerts in all"),
    "context_alerts_one": ("{n} alerte au total", "{n} alert in all"),
    "name_help": (
        "Votre nom apparaît sur les alertes que vous prenez en charge ou que vous closez.",
        "Your name is shown on the alerts you take in charge or resolve.",
    ),
    "back": ("Retour", "Back"),
    "online": ("en ligne", "online"),
    "offline": ("hors ligne", "offline"),
    "since": ("depuis {t}", "since {t}"),
    # the console for many homes: inbox, filters, alert page
    "home_named": ("logement {id}", "home {id}"),
    "recent_context_line": ("Contexte récent : {c}", "Recent context: {c}"),
    "to_take": ("{n} à prendre en charge", "{n} waiting to be taken in charge"),
    "directory_link": ("Annuaire des logements", "Home directory"),
    "stats_link": ("Statistiques", "Statistics"),
    "filters": ("Filtrer les alertes", "Filter the alerts"),
    "filter_home": ("Logement", "Home"),
    "filter_type": ("Type d'alerte", "Alert type"),
    "filter_state": ("État", "State"),
    "filter_all_homes": ("Tous les logements", "All homes"),
    "filter_all_types": ("Tous les types", "All types"),
    "filter_open": ("Ouvertes", "Open"),
    "filter_raised": ("À prendre en charge", "Not taken in charge yet"),
    "filter_acknowledged": ("Prises en charge", "Taken in charge"),
    "filter_closed": ("Closes récemment", "Recently closed"),
    "filter_apply": ("Filtrer", "Filter"),
    "filter_clear": ("Retirer les filtres", "Clear the filters"),
    "filter_none": (
        "Aucune alerte ne correspond à ces filtres ({what}).",
        "No alert matches these filters ({what}).",
    ),
    "pending_confirm": (
        "transmis au logement, en attente de sa confirmation",
        "sent to the home, waiting for its confirmation",
    ),
    "open_alert": ("Voir l'alerte", "Open the alert"),
    "close_with_outcome": ("Clore…", "Resolve…"),
    "severity": ("Gravité", "Severity"),
    "state": ("État", "State"),
    "raised_when": ("Déclenchée", "Raised"),
    "what_happened": ("Ce qui s'est passé", "What happened"),
    "no_evidence": ("Pas de détail transmis par le capteur.", "No detail sent by the sensor."),
    "the_home": ("Le logement", "The home"),
    "access": ("Accès", "Access"),
    "centre_account": ("Compte au centre", "Monitoring centre account"),
    "no_card": (
        "Ce logement n'a pas encore de fiche dans l'annuaire.",
        "This home has no card in the directory yet.",
    ),
    "recent_alerts": ("Alertes récentes du logement", "The home's recent alerts"),
    "home_page": ("Page du logement", "The home's page"),
    "directory_card": ("Fiche de l'annuaire", "Directory card"),
    "staff_expired": (
        "Votre session a expiré : connectez-vous de nouveau.",
        "Your session has expired: sign in again.",
    ),
    "draft_waiting": (
        "Votre note est gardée : vous la retrouverez après la connexion.",
        "Your note is kept: you will find it after signing in.",
    ),
    "draft_kept": (
        "Votre note a été gardée pendant la reconnexion : relisez-la puis confirmez.",
        "Your note was kept while you signed in again: check it, then confirm.",
    ),
    "draft_kept_ack": (
        "Vous êtes reconnecté : refaites l'action sur l'alerte.",
        "You are signed in again: do the action on the alert again.",
    ),
    # the one-click acknowledgement link's page (`/lien/{token}`)
    "link_title": ("Prise en charge", "Taking in charge"),
    "link_heading": ("{title} chez {who}", "{title} at {who}'s home"),
    "link_facts": ("Gravité : {sev} · déclenchée {t}", "Severity: {sev} · raised {t}"),
    "link_button": ("Je prends en charge cette alerte", "I take this alert in charge"),
    "link_chain": (
        "Tant que personne ne prend l'alerte en charge, la chaîne d'alerte continue.",
        "Until someone takes the alert in charge, the alert chain goes on.",
    ),
    "link_done": (
        "C'est noté : vous avez pris l'alerte en charge. "
        "La chaîne d'alerte est arrêtée et le logement est prévenu.",
        "Done: you have taken the alert in charge. "
        "The alert chain is stopped and the home is told.",
    ),
    "link_taken": (
        "Cette alerte est déjà prise en charge.",
        "This alert is already taken in charge.",
    ),
    "link_taken_by": (
        "Cette alerte est déjà prise en charge par {by}.",
        "This alert is already taken in charge by {by}.",
    ),
    "link_closed": (
        "Cette alerte est close ({state}) : il n'y a plus rien à prendre en charge.",
        "This alert is closed ({state}): there is nothing left to take in charge.",
    ),
    "link_used": ("Ce lien a déjà servi.", "This link has already been used."),
    "link_unknown": ("Cette alerte n'est pas connue du hub.", "The hub does not know this alert."),
    "link_failed": (
        "La prise en charge n'a pas pu être transmise au logement ; appelez-le.",
        "The acknowledgement could not be sent to the home; call it.",
    ),
    "link_invalid": ("Ce lien n'est pas valide.", "This link is not valid."),
    "link_tampered": (
        "Ce lien n'est pas valide (il a été modifié ou mal copié).",
        "This link is not valid (it was changed or copied wrongly).",
    ),
    "link_expired": (
        "Ce lien a expiré. Prenez l'alerte en charge depuis la console.",
        "This link has expired. Take the alert in charge from the console.",
    ),
}

# a contact's relation to the resident (the home directory's `relation`)
RELATION_NAMES: dict[str, tuple[str, str]] = {
    "family": ("Famille", "Family"),
    "neighbour": ("Voisinage", "Neighbour"),
    "gp": ("Médecin traitant", "GP"),
    "carer": ("Aide à domicile", "Home carer"),
    "other": ("Contact", "Contact"),
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
    "checkin_button": ("Appuyez sur le bouton « ça va »", "Press the “I'm fine” button"),
    "prompt": (
        "Attendez que le carillon d'appel donne signe de vie",
        "Wait for the chime to report",
    ),
}


# role -> what the device is, as a noun (a device is named by this and its room)
ROLE_NAMES: dict[str, tuple[str, str]] = {
    "motion": ("détecteur de mouvement", "motion detector"),
    "presence": ("détecteur de présence", "presence detector"),
    "door_entrance": ("contact de la porte d'entrée", "front door contact"),
    "door_fridge": ("contact du réfrigérateur", "fridge door contact"),
    "door": ("contact de porte", "door contact"),
    "bed": ("capteur de lit", "bed sensor"),
    "chair": ("capteur de fauteuil", "chair sensor"),
    "sos_button": ("bouton d'appel", "call button"),
    "wearable": ("capteur porté", "wearable sensor"),
    "temperature": ("thermomètre", "thermometer"),
    "water_leak": ("détecteur de fuite d'eau", "water leak detector"),
    "power": ("prise connectée", "smart plug"),
    "toilet_flush": ("capteur de chasse d'eau", "toilet flush sensor"),
    "light_switch": ("interrupteur", "light switch"),
    "checkin_button": ("bouton « ça va »", "“I'm fine” button"),
    "prompt": ("carillon d'appel", "chime"),
}

# room kind -> "of the <room>" (French needs the article)
ROOM_KIND_OF: dict[str, tuple[str, str]] = {
    "bedroom": ("de la chambre", "in the bedroom"),
    "bathroom": ("de la salle de bain", "in the bathroom"),
    "kitchen": ("de la cuisine", "in the kitchen"),
    "living": ("du séjour", "in the living room"),
    "entrance": ("de l'entrée", "in the entrance"),
}

SOURCE_NAMES: dict[str, tuple[str, str]] = {
    "zigbee2mqtt": ("Zigbee", "Zigbee"),
    "bthome": ("Bluetooth", "Bluetooth"),
    "wearable": ("Bluetooth (porté)", "Bluetooth (worn)"),
}

# threshold -> (label fr, label en, help fr, help en)
THRESHOLD_TEXTS: dict[str, tuple[str, str, str, str]] = {
    "fall_confirm_s": (
        "Confirmation d'une chute",
        "Fall confirmation",
        "Temps laissé à la personne pour se relever ou annuler avant l'alerte.",
        "Time left to the person to get up or cancel before the alert.",
    ),
    "night_start_h": (
        "Début de la nuit",
        "Night starts",
        "Heure à partir de laquelle une sortie du logement est surveillée.",
        "Hour from which leaving the home is watched.",
    ),
    "night_end_h": (
        "Fin de la nuit",
        "Night ends",
        "Heure à laquelle la surveillance de nuit s'arrête.",
        "Hour at which the night watch stops.",
    ),
    "night_exit_return_min": (
        "Retour attendu après une sortie de nuit",
        "Expected return after a night exit",
        "Alerte si la personne n'est pas revenue dans ce délai.",
        "Alert if the person has not come back within this time.",
    ),
    "temp_low_c": (
        "Température basse",
        "Low temperature",
        "Alerte en dessous de cette température (risque de froid).",
        "Alert below this temperature (risk of cold).",
    ),
    "temp_high_c": (
        "Température haute",
        "High temperature",
        "Alerte au-dessus de cette température (risque de canicule).",
        "Alert above this temperature (risk of heat).",
    ),
    "battery_low_pct": (
        "Pile faible",
        "Low battery",
        "Signaler une pile en dessous de ce niveau.",
        "Report a battery below this level.",
    ),
    "offline_floor_min": (
        "Capteur silencieux après au moins",
        "Sensor silent after at least",
        "Délai minimal avant de signaler un capteur qui ne répond plus.",
        "Shortest time before reporting a sensor that stopped answering.",
    ),
    "learning_days": (
        "Durée d'apprentissage",
        "Learning period",
        "Jours d'observation des habitudes avant les alertes d'inactivité apprises.",
        "Days of watching the routine before the learned inactivity alerts.",
    ),
    "checkin_answer_min": (
        "Délai de réponse à « ça va ? »",
        "Time to answer “are you all right?”",
        "Sans réponse dans ce délai, l'équipe de soins est prévenue.",
        "Without an answer within this time, the care team is told.",
    ),
    "checkin_max_per_day": (
        "Questions « ça va ? » par jour",
        "“Are you all right?” questions a day",
        "Nombre maximal de questions anticipées par jour.",
        "Most early questions a day.",
    ),
    "checkin_quiet_from_h": (
        "Pas de question à partir de",
        "No question from",
        "Début de la période sans question (égal à la fin : aucune période).",
        "Start of the quiet period (equal to its end: none).",
    ),
    "checkin_quiet_to_h": (
        "Pas de question jusqu'à",
        "No question until",
        "Fin de la période sans question.",
        "End of the quiet period.",
    ),
    "checkin_in_bed_at_night": (
        "Questions au lit la nuit",
        "Questions in bed at night",
        "1 : poser la question même au lit la nuit ; 0 : non.",
        "1: ask even in bed at night; 0: do not.",
    ),
}

UNIT_NAMES: dict[str, tuple[str, str]] = {
    "s": ("s", "s"),
    "min": ("min", "min"),
    "h": ("h", "h"),
    "°C": ("°C", "°C"),
    "%": ("%", "%"),
    "days": ("jours", "days"),
    "per_day": ("par jour", "a day"),
    "flag": ("(0 ou 1)", "(0 or 1)"),
}

# snake_case, kebab-case or an IEEE address: a name written for a program, not for people
_KEY_LIKE = re.compile(r"[a-z0-9_.\-]+|[A-Za-z0-9]*_[A-Za-z0-9_]*|0x[0-9a-fA-F]+")
# roles whose name already says where the device is
_PLACED_ROLES = frozenset({"door_entrance", "door_fridge", "wearable"})


def plural_key(key: str, n: float, lang: str) -> str:
    """`key_one` for one thing (French: 0 and 1 too), else `key`."""
    one = n < 2 if lang == "fr" else n == 1
    return f"{key}_one" if one and f"{key}_one" in TEXTS else key


def tn(key: str, count: float, lang: str, **kw: Any) -> str:
    """`t` with the plural chosen by `n`: "1 signe", "25 signes"."""
    return t(plural_key(key, count, lang), lang, **kw)


def role_name(role: str, lang: str) -> str:
    return _pick(ROLE_NAMES.get(role), lang, role.replace("_", " "))


def source_name(source: str, lang: str) -> str:
    return _pick(SOURCE_NAMES.get(source), lang, source)


def unit_name(unit: str, lang: str) -> str:
    return _pick(UNIT_NAMES.get(unit), lang, unit)


def threshold_label(key: str, lang: str) -> str:
    texts = THRESHOLD_TEXTS.get(key)
    return key if texts is None else texts[1 if lang == "en" else 0]


def threshold_help(key: str, lang: str) -> str:
    texts = THRESHOLD_TEXTS.get(key)
    return "" if texts is None else texts[3 if lang == "en" else 2]


def looks_like_key(name: str) -> bool:
    """True for names a person did not write for people (`motion_kitchen`, `0x00158d...`)."""
    return bool(_KEY_LIKE.fullmatch(name.strip()))


def room_name(room: str, kind: str | None, lang: str) -> str:
    """The installer's room name, or the kind in words when the name is the kind's key."""
    if kind is not None and (room == kind or "_" in room) and kind in ROOM_KIND_NAMES:
        return room_kind_name(kind, lang)
    return room


def device_name(
    friendly_name: str, role: str, room: str | None, kind: str | None, lang: str
) -> str:
    """The installer's name for a device when they gave one for people ("lampe du salon"),
    else what it is and where: "détecteur de mouvement de la cuisine"."""
    if friendly_name.strip() and not looks_like_key(friendly_name):
        return friendly_name.strip()
    what = role_name(role, lang)
    what = what[:1].upper() + what[1:]
    if not room or role in _PLACED_ROLES:
        return what
    shown = room_name(room, kind, lang)
    if kind in ROOM_KIND_OF and shown == room_kind_name(kind or "", lang):
        where = _pick(ROOM_KIND_OF[kind or ""], lang, "")
        return f"{what} {where}"
    return f"{what} ({shown})"


# `veille provision`'s checklist lines (English, for the command line) in the pages' words
CHECKLIST_WORDS: dict[str, tuple[str, str]] = {
    "no sos_button: the resident has no way to call for help": (
        "Pas de bouton d'appel : la personne n'a aucun moyen d'appeler à l'aide.",
        "No call button: the resident has no way to call for help.",
    ),
    "no door_entrance contact: night exits and time out cannot be seen": (
        "Pas de contact sur la porte d'entrée : les sorties de nuit et le temps passé dehors "
        "ne sont pas vus.",
        "No front door contact: night exits and time out cannot be seen.",
    ),
    "no bedroom room declared": ("Aucune chambre déclarée.", "No bedroom declared."),
    "no bedroom sensor (motion, presence or bed): getting up is not seen": (
        "Aucun capteur dans la chambre (mouvement, présence ou lit) : le lever n'est pas vu.",
        "No bedroom sensor (motion, presence or bed): getting up is not seen.",
    ),
    "no bathroom room declared": ("Aucune salle de bain déclarée.", "No bathroom declared."),
    "no bathroom sensor: long bathroom stays are not seen": (
        "Aucun capteur dans la salle de bain : les longs séjours ne sont pas vus.",
        "No bathroom sensor: long bathroom stays are not seen.",
    ),
    "no wearable: falls are detected only from inactivity": (
        "Pas de capteur porté : les chutes ne sont vues que par l'inactivité.",
        "No wearable sensor: falls are seen only through inactivity.",
    ),
}
_CHECK_ROOM = re.compile(r"room '(.+)' has no device")
_CHECK_PIN = re.compile(r"no (family|installer) PIN set")


def checklist_words(line: str, lang: str) -> str:
    """A checklist line of `edge.commands.provision.checklist` as the pages say it."""
    if line in CHECKLIST_WORDS:
        return _pick(CHECKLIST_WORDS[line], lang, line)
    if match := _CHECK_ROOM.fullmatch(line):
        room = match.group(1)
        return (
            f"La pièce « {room} » n'a aucun capteur."
            if lang == "fr"
            else (f"The room “{room}” has no sensor.")
        )
    if match := _CHECK_PIN.match(line):
        who = match.group(1)
        if lang == "fr":
            return (
                "Le code de la famille n'est pas défini."
                if who == "family"
                else "Le code de l'installateur n'est pas défini."
            )
        return f"The {who}'s code is not set."
    return line


# Zigbee2MQTT's bridge events (type, status) in words
JOIN_EVENTS: dict[str, tuple[str, str]] = {
    "device_joined": ("appareil arrivé sur le réseau", "device joined the network"),
    "device_announce": ("appareil annoncé", "device announced itself"),
    "device_leave": ("appareil parti du réseau", "device left the network"),
    "device_interview:started": ("interrogation commencée", "interview started"),
    "device_interview:successful": ("interrogation réussie", "interview successful"),
    "device_interview:failed": ("interrogation échouée", "interview failed"),
}


def join_event_words(kind: str, status: str | None, lang: str) -> str:
    pair = JOIN_EVENTS.get(f"{kind}:{status}") or JOIN_EVENTS.get(kind)
    return _pick(pair, lang, i18n_fallback(kind))


def i18n_fallback(key: str) -> str:
    """A key nobody translated yet, shown as words rather than as a key."""
    return key.replace("_", " ")


# the reasons `edge.home.parse_home` and `edge.status.editing` give (English, for files and
# logs), as the installer pages say them: (pattern, French, English) with the pattern's groups
EDIT_ERRORS: tuple[tuple[re.Pattern[str], str, str], ...] = (
    (
        re.compile(r"room '(.+)' is declared twice"),
        "La pièce « {0} » existe déjà.",
        "The room “{0}” already exists.",
    ),
    (
        re.compile(r"device id '(.+)' is declared twice"),
        "L'identifiant « {0} » est déjà pris.",
        "The identifier “{0}” is already taken.",
    ),
    (
        re.compile(r"device id '?(.*?)'? must match .*"),
        "L'identifiant « {0} » ne convient pas : lettres, chiffres, - _ . : seulement.",
        "The identifier “{0}” does not fit: letters, digits, - _ . : only.",
    ),
    (
        re.compile(r"room '(.+)' is not declared.*"),
        "La pièce « {0} » n'existe pas.",
        "The room “{0}” does not exist.",
    ),
    (
        re.compile(r"unknown timezone '(.*)'"),
        "Fuseau horaire inconnu : « {0} » (par exemple Europe/Paris).",
        "Unknown time zone: “{0}” (for example Europe/Paris).",
    ),
    (
        re.compile(r"BLE address '(.*)' must be like .*"),
        "Adresse Bluetooth « {0} » incorrecte (forme AA:BB:CC:DD:EE:FF).",
        "Bluetooth address “{0}” is wrong (form AA:BB:CC:DD:EE:FF).",
    ),
    (
        re.compile(r"bindkey must be 32 hex digits.*"),
        "La clé BTHome doit compter 32 chiffres hexadécimaux.",
        "The BTHome key must have 32 hexadecimal digits.",
    ),
    (
        re.compile(r"device '.+' cannot serve as (\w+): .*"),
        "Cet appareil ne peut pas servir de « {0} » : ce qu'il mesure ne le permet pas.",
        "This device cannot serve as “{0}”: what it measures does not allow it.",
    ),
    (
        re.compile(r"no (?:device|room) '(.+)'"),
        "« {0} » n'existe plus : rechargez la page.",
        "“{0}” no longer exists: reload the page.",
    ),
    (
        re.compile(r"contact needs a name"),
        "Le contact doit avoir un nom.",
        "A contact needs a name.",
    ),
    (
        re.compile(r"room needs a non-empty name"),
        "La pièce doit avoir un nom.",
        "A room needs a name.",
    ),
)


def edit_error_words(reason: str, lang: str) -> str:
    """A refused edit's reason in the page's words (the reason itself when not known)."""
    text = reason.removeprefix("installer page:").strip()
    text = re.sub(r"^(?:.*?:)?\d+: ", "", text)  # the "file:line: " of parse_home
    for pattern, fr, en in EDIT_ERRORS:
        if match := pattern.fullmatch(text):
            words = [role_name(g, lang) if g in ROLE_NAMES else g for g in match.groups()]
            return (en if lang == "en" else fr).format(*words)
    return text


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
    text = _pick(ROLE_PROMPTS.get(role), lang, role.replace("_", " ")).format(room=room or "")
    return text.replace(" ()", "")


def number(value: float, lang: str, digits: int = 1) -> str:
    """`514,6` and `1 234` in French (a narrow no-break space between thousands), `514.6` and
    `1,234` in English; trailing zeros dropped."""
    text = f"{value:,.{digits}f}"
    if digits and "." in text:
        text = text.rstrip("0").rstrip(".")
    if lang == "fr":
        return text.replace(",", "\u202f").replace(".", ",")
    return text


def relation_name(relation: str, lang: str) -> str:
    """A directory contact's relation (`gp`) as people say it (`Médecin traitant`)."""
    return _pick(RELATION_NAMES.get(relation), lang, relation)


def age(at: float, now: float, tz: dt.tzinfo, lang: str) -> str:
    """How long ago, in plain words, and when: `il y a 12 min (14:05)` today, else
    `il y a 1 jour · hier 23:10` / `12 min ago (14:05)` (the date when not today)."""
    ago = t("ago", lang, d=duration(now - at, lang))
    when = clock_time(at, tz, now, lang)
    today = dt.datetime.fromtimestamp(at, tz).date() == dt.datetime.fromtimestamp(now, tz).date()
    return f"{ago} ({when})" if today else f"{ago} · {when}"


def duration(seconds: float, lang: str) -> str:
    """`12 min`, `3 h 05`, `2 jours` / `2 days`."""
    seconds = max(0.0, seconds)
    minutes = int(seconds // 60)
    if minutes < 1:
        return "moins d'une minute" if lang == "fr" else "less than a minute"
    # no-break spaces: "3 h 05" never splits across lines
    if minutes < 60:
        return f"{minutes}\u00a0min"
    hours, rest = divmod(minutes, 60)
    if hours < 48:
        return f"{hours}\u00a0h\u00a0{rest:02d}"
    days = hours // 24
    return f"{days}\u00a0jours" if lang == "fr" else f"{days}\u00a0days"


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


# evidence key -> (French, English) phrase with {v}; booleans have their own phrase pairs.
# Keys not listed here are left out of the words (the alert's JSON still carries them).
_EVIDENCE: dict[str, tuple[str, str]] = {
    "peak_g": ("choc de {v} g", "impact of {v} g"),
    "score": ("certitude du modèle {pct} %", "model confidence {pct} %"),
    "inactive_min": ("aucun mouvement depuis {v} min", "no movement for {v} min"),
    "usual_max_min": ("d'habitude au plus {v} min", "usually at most {v} min"),
    "limit_min": ("alerte prévue après {v} min", "alert set after {v} min"),
    "silent_min": ("silencieux depuis {v} min", "silent for {v} min"),
    "usual_interval_min": (
        "se manifeste d'habitude toutes les {v} min",
        "usually heard from every {v} min",
    ),
    "battery": ("pile à {v} %", "battery at {v} %"),
    "battery_pct": ("pile à {v} %", "battery at {v} %"),
    "threshold_pct": ("seuil de {v} %", "threshold {v} %"),
    "temperature_c": ("{v} °C", "{v} °C"),
    "threshold_c": ("seuil de {v} °C", "threshold {v} °C"),
    "for_min": ("depuis {v} min", "for {v} min"),
    "confirm_s": ("confirmé après {v} s", "confirmed after {v} s"),
    "cancelled_by": ("annulée par {v}", "cancelled by {v}"),
    "by": ("par {v}", "by {v}"),
    "check_in_at": ("question posée à {v}", "asked at {v}"),
    "check_in_limit_min": ("question après {v} min", "asked after {v} min"),
    "door_at": ("porte ouverte à {v}", "door opened at {v}"),
    "out_min": ("dehors depuis {v} min", "out for {v} min"),
    "stay_min": ("dans la pièce depuis {v} min", "in the room for {v} min"),
    "since": ("dernier mouvement à {v}", "last movement at {v}"),
    "usual_get_up": ("lever habituel vers {v}", "usually up around {v}"),
    "deadline": ("attendu avant {v}", "expected before {v}"),
    "after_s": ("réponse après {v} s", "answered after {v} s"),
}
# a number and its unit never split across lines: "100 %", "30 s"
_EVIDENCE = {
    key: (fr.replace("} ", "}\u00a0"), en.replace("} ", "}\u00a0"))
    for key, (fr, en) in _EVIDENCE.items()
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
        ("aucun mouvement ensuite", "no movement afterwards"),
    ),
    "help_pressed": (("bouton d'aide pressé", "help button pressed"), ("", "")),
    "off_furniture": (("hors du lit et du fauteuil", "off the bed and the chair"), ("", "")),
    "wet": (("capteur mouillé", "sensor wet"), ("capteur sec", "sensor dry")),
    "battery_low": (
        ("pile faible signalée", "battery reported low"),
        ("pile correcte", "battery fine"),
    ),
    "learning": (("habitudes encore en apprentissage", "routine still being learned"), ("", "")),
    "learned": (
        ("", ""),
        ("rythme du capteur pas encore appris", "sensor's rhythm not learned yet"),
    ),
    "never_heard": (("jamais entendu", "never heard from"), ("", "")),
}
# evidence key -> {value: (French, English)} for the words a detector puts as values
_EVIDENCE_VALUES: dict[str, dict[str, tuple[str, str]]] = {
    "button": {
        "single": ("appui simple", "single press"),
        "double": ("double appui", "double press"),
        "long": ("appui long", "long press"),
        "hold": ("appui long", "long press"),
    },
    "posture": {
        "lying": ("personne allongée", "person lying down"),
        "upright": ("personne debout", "person upright"),
        "sitting": ("personne assise", "person sitting"),
    },
    "check_in": _CHECK_IN,
    "context": {
        "bed": ("dernier signe au lit", "last sign in bed"),
        "chair": ("dernier signe dans le fauteuil", "last sign in the chair"),
        "out": ("hors du logement", "out of the home"),
        "bedroom": ("dernier signe dans la chambre", "last sign in the bedroom"),
        "bathroom": ("dernier signe à la salle de bain", "last sign in the bathroom"),
        "kitchen": ("dernier signe à la cuisine", "last sign in the kitchen"),
        "living": ("dernier signe au séjour", "last sign in the living room"),
        "entrance": ("dernier signe à l'entrée", "last sign at the entrance"),
    },
    "device": {"wearable": ("capteur porté", "wearable sensor")},
    "cancelled_by": {"wearer": ("la personne elle-même", "the wearer")},
}


def evidence_words(evidence: Mapping[str, Any], lang: str) -> str:
    """`choc de 3,4 g, personne allongée, aucun mouvement ensuite` (small, plain words)."""
    parts: list[str] = []
    for key, value in evidence.items():
        phrase = ""
        if isinstance(value, bool):
            if key in _EVIDENCE_BOOL:
                phrase = _pick(_EVIDENCE_BOOL[key][0 if value else 1], lang, "")
        elif key == "score" and isinstance(value, int | float):
            phrase = _pick(_EVIDENCE["score"], lang, "").format(pct=round(float(value) * 100))
        elif isinstance(value, str) and value in _EVIDENCE_VALUES.get(key, {}):
            words = _pick(_EVIDENCE_VALUES[key][value], lang, value)
            phrase = _pick(_EVIDENCE[key], lang, "").format(v=words) if key in _EVIDENCE else words
        elif key in _EVIDENCE and isinstance(value, int | float | str):
            shown = number(float(value), lang) if isinstance(value, int | float) else value
            if not looks_like_key(str(shown)) or isinstance(value, int | float):
                phrase = _pick(_EVIDENCE[key], lang, "").format(v=shown)
        if phrase:
            parts.append(phrase)
    return ", ".join(parts)
