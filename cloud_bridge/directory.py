"""The home directory at the hub: who lives in each home and whom to call.

Per home: the resident's name, address, phone, access notes (key box, door code), the
contacts in order (name, relation, phone, email) and the home's account at the monitoring
centre. Kept in the hub's store (table `home_directory`, one JSON card per home, SQLite or
PostgreSQL), loaded from `veille hub --directory directory.toml` and edited in the console
by coordinators. It never leaves the hub: nothing in it is published to a gateway.

```toml
[[home]]
home_id = "h-0042"
resident = "Mme Jeanne Martin"
address = "12 rue des Lilas, 69003 Lyon"
phone = "04 78 00 00 00"
access = "Boîte à clés à gauche de la porte, code 1234"
centre_account = "B0042"            # optional: the home's own account at the centre

[[home.contact]]                    # in the order they are called
name = "Paul Martin"
relation = "family"                 # family | neighbour | gp | carer | other
phone = "06 12 34 56 78"
email = "paul.martin@example.org"
```

`HomeCard` is pure (`parse_card` checks one mapping); `DirectoryStore` is the store's side.
"""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from cloud_bridge.console_sessions import _Db
from cloud_bridge.contract import HOME_ID_RE
from cloud_bridge.errors import VeilleError
from cloud_bridge.notify.config import RELATIONS
from cloud_bridge.pages.i18n import RELATION_NAMES

RELATION_LABELS_FR = {key: fr for key, (fr, _en) in RELATION_NAMES.items()}
HEX_RE = re.compile(r"^[0-9A-Fa-f]{3,16}$")
EMAIL_RE = re.compile(r"^[^@\s<>]+@[^@\s<>]+\.[^@\s<>]+$")
TEXT_MAX = 300
CONTACTS_MAX = 10
CARD_KEYS = frozenset(
    {"home_id", "resident", "address", "phone", "access", "centre_account", "contact"}
)
CONTACT_KEYS = frozenset({"name", "relation", "phone", "email"})
SCHEMA = (
    "CREATE TABLE IF NOT EXISTS home_directory (home_id TEXT PRIMARY KEY, card TEXT NOT NULL,"
    " updated_at DOUBLE PRECISION NOT NULL, updated_by TEXT NOT NULL)",
)


class DirectoryError(ValueError):
    """A card that cannot be kept; the message says which field and why."""


@dataclass(frozen=True, slots=True)
class Contact:
    name: str
    relation: str = "other"
    phone: str = ""
    email: str = ""

    @property
    def relation_fr(self) -> str:
        return RELATION_LABELS_FR.get(self.relation, self.relation)


@dataclass(frozen=True, slots=True)
class HomeCard:
    home_id: str
    resident: str = ""
    address: str = ""
    phone: str = ""
    access: str = ""
    centre_account: str = ""
    contacts: tuple[Contact, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["contacts"] = [asdict(c) for c in self.contacts]
        return out

    def as_notice(self) -> dict[str, Any]:
        """What the notifier and the link page read (`Notifier`'s `directory`)."""
        out = self.to_dict()
        out["contacts"] = [{**asdict(c), "relation_fr": c.relation_fr} for c in self.contacts]
        return out

    def contacts_of(self, relations: Sequence[str]) -> list[Contact]:
        """The contacts of these relations, in the card's order."""
        return [c for c in self.contacts if c.relation in relations]


def _text(data: Mapping[str, Any], key: str, where: str) -> str:
    value = data.get(key, "")
    if not isinstance(value, str):
        raise DirectoryError(f"{where}: {key} must be text")
    value = value.strip()
    if len(value) > TEXT_MAX:
        raise DirectoryError(f"{where}: {key} is longer than {TEXT_MAX} characters")
    return value


def parse_card(data: Mapping[str, Any], where: str = "home") -> HomeCard:
    """One card from a mapping (a `[[home]]` table, a form, a stored row); DirectoryError."""
    for key in data:
        if key not in CARD_KEYS and key != "contacts":
            raise DirectoryError(f"{where}: unknown key {key!r}")
    home_id = _text(data, "home_id", where)
    if not HOME_ID_RE.match(home_id):
        raise DirectoryError(f"{where}: home_id {home_id!r} is not a home id")
    where = f"{where} {home_id}"
    account = _text(data, "centre_account", where)
    if account and not HEX_RE.match(account):
        raise DirectoryError(f"{where}: centre_account must be 3-16 hex characters")
    raw_contacts = data.get("contact", data.get("contacts", []))
    if not isinstance(raw_contacts, list) or len(raw_contacts) > CONTACTS_MAX:
        raise DirectoryError(f"{where}: contacts must be a list of at most {CONTACTS_MAX}")
    contacts = []
    for n, raw in enumerate(raw_contacts, start=1):
        at = f"{where} contact {n}"
        if not isinstance(raw, Mapping):
            raise DirectoryError(f"{at}: must be a table")
        for key in raw:
            if key not in CONTACT_KEYS:
                raise DirectoryError(f"{at}: unknown key {key!r}")
        name = _text(raw, "name", at)
        if not name:
            raise DirectoryError(f"{at}: name is required")
        relation = _text(raw, "relation", at) or "other"
        if relation not in RELATIONS:
            raise DirectoryError(f"{at}: relation {relation!r} is not one of {list(RELATIONS)}")
        email = _text(raw, "email", at)
        if email and not EMAIL_RE.match(email):
            raise DirectoryError(f"{at}: email {email!r} is not an address")
        contacts.append(Contact(name, relation, _text(raw, "phone", at), email))
    return HomeCard(
        home_id=home_id,
        resident=_text(data, "resident", where),
        address=_text(data, "address", where),
        phone=_text(data, "phone", where),
        access=_text(data, "access", where),
        centre_account=account.upper(),
        contacts=tuple(contacts),
    )


def load_directory(path: Path) -> list[HomeCard]:
    """`directory.toml`; VeilleError(`file: reason`) if it cannot be used."""
    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise VeilleError(f"{path}: cannot read the directory: {exc}") from exc
    extra = set(data) - {"home"}
    if extra:
        raise VeilleError(f"{path}: unknown section or key {sorted(extra)[0]!r}")
    homes = data.get("home", [])
    if not isinstance(homes, list):
        raise VeilleError(f"{path}: homes must be written [[home]]")
    cards: dict[str, HomeCard] = {}
    for n, table in enumerate(homes, start=1):
        try:
            card = parse_card(table, f"home {n}")
        except DirectoryError as exc:
            raise VeilleError(f"{path}: {exc}") from exc
        if card.home_id in cards:
            raise VeilleError(f"{path}: home {card.home_id} is written twice")
        cards[card.home_id] = card
    return list(cards.values())


class DirectoryStore:
    """The cards in the hub's store (SQLite or PostgreSQL)."""

    def __init__(self, db: _Db) -> None:
        self._db = db
        db.create(SCHEMA)

    def get(self, home_id: str) -> HomeCard | None:
        rows = self._db.rows("SELECT card FROM home_directory WHERE home_id = ?", (home_id,))
        return parse_card(json.loads(rows[0][0]), "stored card") if rows else None

    def all(self) -> list[HomeCard]:
        rows = self._db.rows("SELECT card FROM home_directory ORDER BY home_id")
        return [parse_card(json.loads(r[0]), "stored card") for r in rows]

    def put(self, card: HomeCard, by: str, now: float) -> None:
        self._db.rows(
            "INSERT INTO home_directory (home_id, card, updated_at, updated_by) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (home_id) DO UPDATE SET card = excluded.card,"
            " updated_at = excluded.updated_at, updated_by = excluded.updated_by",
            (card.home_id, json.dumps(card.to_dict(), ensure_ascii=False), now, by),
        )

    def notice(self, home_id: str) -> Mapping[str, Any]:
        """The notifier's `directory(home_id)`: the card's fields, {} for an unknown home."""
        try:
            card = self.get(home_id)
        except (DirectoryError, ValueError):
            return {}
        return card.as_notice() if card is not None else {}

    def close(self) -> None:
        self._db.close()


def open_directory(spec: str | None) -> DirectoryStore:
    """The directory on the store `spec`, as `veille hub --store` names it."""
    from cloud_bridge.console_sessions import open_on_store

    return open_on_store(spec, DirectoryStore, "the home directory")
