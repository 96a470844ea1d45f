"""The console's inbox for many homes: filters, and the staff's own actions shown at once.

Filters (`?home=`, `?type=`, `?state=`) are plain query parameters, so the inbox's partial
refresh and the redirect after an action keep them; a value the console does not know is
dropped, never an error. An action (take in charge, resolve) is sent to the home, which
answers with the alert's new state a moment later; until then the console shows the state
it asked for (`LocalActions`), so a card never offers "Prendre en charge" again after the
click. Those actions are kept beside the console's sessions (`ConsoleState`, in the hub's
store, so every console process shows them) or in memory (`MemoryActions`, one process);
one the home has not confirmed within `PENDING_S` is no longer shown (the buttons come back).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlencode

from cloud_bridge.contract import HOME_ID_RE, SEVERITY_RANK
from cloud_bridge.hub_store import STATE_ORDER
from cloud_bridge.pages import i18n

PENDING_S = 120.0  # an action the home has not confirmed in this time is no longer shown
FILTER_STATES = ("raised", "acknowledged", "closed")
CLOSED_STATES = frozenset({"resolved", "cancelled"})
CLOSED_SHOWN = 50  # the most recent closed alerts the "closed" filter lists


@dataclass(frozen=True, slots=True)
class Filters:
    """What the inbox is narrowed to ("" = everything)."""

    home: str = ""
    type: str = ""
    state: str = ""

    def active(self) -> bool:
        return bool(self.home or self.type or self.state)

    def query(self) -> str:
        """`home=h-0042&state=raised`, without the empty ones."""
        pairs = (("home", self.home), ("type", self.type), ("state", self.state))
        return urlencode([(k, v) for k, v in pairs if v])

    def path(self) -> str:
        """The inbox with these filters: where an action returns to."""
        return "/?" + self.query() if self.active() else "/"

    def keeps(self, alert: Mapping[str, Any]) -> bool:
        """Whether `alert` (with its shown `state`) passes the filters."""
        if self.home and alert["home_id"] != self.home:
            return False
        if self.type and alert["type"] != self.type:
            return False
        state = str(alert["state"])
        if self.state == "closed":
            return state in CLOSED_STATES
        if self.state:
            return state == self.state
        return True


def parse_filters(params: Mapping[str, str]) -> Filters:
    """The filters from a query string; unknown values are dropped."""
    home = params.get("home", "")
    kind = params.get("type", "")
    state = params.get("state", "")
    return Filters(
        home=home if HOME_ID_RE.match(home) else "",
        type=kind if kind in i18n.ALERT_NAMES else "",
        state=state if state in FILTER_STATES else "",
    )


def filter_words(filters: Filters, names: Mapping[str, str], lang: str) -> str:
    """The filters in a sentence's words: `Mme Martin, Chute détectée, à prendre en charge`."""
    parts = []
    if filters.home:
        parts.append(names.get(filters.home) or i18n.t("home_named", lang, id=filters.home))
    if filters.type:
        parts.append(i18n.alert_name(filters.type, lang))
    if filters.state:
        parts.append(i18n.t(f"filter_{filters.state}", lang).lower())
    return ", ".join(parts)


# --- the staff's own actions until the home confirms them -------------------------------
@dataclass(frozen=True, slots=True)
class LocalAction:
    alert_id: str
    action: str  # "acknowledged" or "resolved"
    by: str
    at: float


class LocalActions(Protocol):
    """Where the console keeps the actions it sent and the home has not confirmed yet."""

    def record_action(self, action: LocalAction) -> None: ...

    def actions(self, since: float) -> dict[str, LocalAction]:
        """The actions recorded after `since`, by alert id (the latest per alert)."""
        ...

    def forget_actions(self, alert_ids: list[str], before: float) -> None:
        """Drop these alerts' actions (the home confirmed) and every one older than `before`."""
        ...


class MemoryActions:
    """LocalActions in this process (the demo, a console without a store)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._actions: dict[str, LocalAction] = {}

    def record_action(self, action: LocalAction) -> None:
        with self._lock:
            self._actions[action.alert_id] = action

    def actions(self, since: float) -> dict[str, LocalAction]:
        with self._lock:
            return {k: a for k, a in self._actions.items() if a.at > since}

    def forget_actions(self, alert_ids: list[str], before: float) -> None:
        with self._lock:
            for key in alert_ids:
                self._actions.pop(key, None)
            for key in [k for k, a in self._actions.items() if a.at <= before]:
                del self._actions[key]


def shown_state(alert: Mapping[str, Any], action: LocalAction | None) -> tuple[str, bool]:
    """The state to show and whether it waits for the home: the action asked for while it
    is ahead of what the home said, else the home's own state."""
    state = str(alert["state"])
    if action is None:
        return state, False
    if STATE_ORDER.get(action.action, 0) > STATE_ORDER.get(state, 0):
        return action.action, True
    return state, False


def inbox_order(alert: Mapping[str, Any]) -> tuple[int, int, int, str]:
    """Alerts nobody has taken first, then taken, then closed; within each, most severe
    first, escalated before the rest of their severity, oldest first."""
    state = alert.get("state", "raised")
    group = 0 if state == "raised" else 2 if state in CLOSED_STATES else 1
    return (
        group,
        SEVERITY_RANK.get(alert["severity"], 9),
        0 if alert.get("escalated") else 1,
        alert["raised_at"],
    )
