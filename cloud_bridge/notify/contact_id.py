"""Contact ID events (SIA DC-05) for the monitoring centre: our alert types as a table.

An event is `Q EEE GG CCC`: the qualifier (1 new event, 3 restore), the three-digit event
code, the partition and the zone (or user) number. Pure data; `dc09` puts it on the line.

| alert type            | code | Contact ID meaning              |
|-----------------------|------|---------------------------------|
| sos                   | 101  | personal emergency              |
| fall                  | 100  | medical                         |
| inactivity            | 102  | fail to report in               |
| no_morning_activity   | 102  | fail to report in               |
| bathroom_long         | 100  | medical (still in the bathroom) |
| night_exit            | 150  | 24-hour auxiliary (non-burglary)|
| water_leak            | 154  | water leakage                   |
| temperature           | 158  | high/low temperature            |
| sensor_offline        | 381  | loss of supervision (RF)        |
| low_battery           | 384  | RF low battery                  |

An alert the gateway cancelled or resolved (the person got up) is sent as the same code
with qualifier 3 (restore). An alert acknowledged at the hub after the centre was told is
sent as 406, cancel, with user 000 (the hub's staff).
"""

from __future__ import annotations

from dataclasses import dataclass

NEW, RESTORE = 1, 3
CANCEL_CODE = 406
PARTITION = 1
ZONE = 1

CODES: dict[str, int] = {
    "sos": 101,
    "fall": 100,
    "inactivity": 102,
    "no_morning_activity": 102,
    "bathroom_long": 100,
    "night_exit": 150,
    "water_leak": 154,
    "temperature": 158,
    "sensor_offline": 381,
    "low_battery": 384,
}


@dataclass(frozen=True, slots=True)
class ContactId:
    """One Contact ID event."""

    qualifier: int
    code: int
    partition: int = PARTITION
    zone: int = ZONE

    def __post_init__(self) -> None:
        if self.qualifier not in (1, 3, 6) or not 0 <= self.code <= 999:
            raise ValueError(f"bad Contact ID event {self.qualifier} {self.code}")
        if not 0 <= self.partition <= 99 or not 0 <= self.zone <= 999:
            raise ValueError(f"bad partition {self.partition} or zone {self.zone}")

    def text(self) -> str:
        """`1101 01 001`, as it goes inside an ADM-CID message."""
        return f"{self.qualifier}{self.code:03d} {self.partition:02d} {self.zone:03d}"


def for_alert(alert_type: str, restore: bool = False) -> ContactId:
    """The event for an alert raised (or, with `restore`, cancelled or resolved)."""
    code = CODES.get(alert_type)
    if code is None:
        raise ValueError(f"no Contact ID code for alert type {alert_type!r}")
    return ContactId(RESTORE if restore else NEW, code)


def cancel() -> ContactId:
    """The hub's staff took the alert in hand: 406 cancel, user 000."""
    return ContactId(NEW, CANCEL_CODE, zone=0)
