"""Property tests of the wearable frame decoder and the wire contract's validators.

Arbitrary bytes never raise out of the wearable stream (bad frames: one warning each), and
the validators accept what the gateway builds and refuse, with `ContractError` only,
anything else a broker could hand them.
"""

from __future__ import annotations

import contextlib
import json
import logging
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cloud_bridge.contract import (
    LEAVES,
    MAX_DEPTH,
    AlertState,
    AlertType,
    ContractError,
    Severity,
    decode,
    encode,
    nesting_depth,
    validate_message,
)
from edge.decode.wearable import WearableStream, encode_accel
from edge.events import Alert

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
JSON = st.recursive(
    st.none() | st.booleans() | st.floats(allow_nan=False) | st.integers() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner),
    max_leaves=12,
)


@FUZZ
@given(st.lists(st.binary(max_size=300), min_size=1, max_size=20))
def test_wearable_stream_never_raises_and_warns_once_per_bad_frame(
    frames: list[bytes],
) -> None:
    stream = WearableStream("belt")
    logger = logging.getLogger("edge.decode.wearable")
    seen: list[logging.LogRecord] = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = seen.append  # type: ignore[method-assign]
    logger.addHandler(handler)
    try:
        for i, data in enumerate(frames):
            before = len(seen)
            stream.feed(data, float(i))
            assert len(seen) - before <= 1
    finally:
        logger.removeHandler(handler)
    assert stream.stats.bad == len(seen)


@FUZZ
@given(
    st.integers(0, 65535),
    st.lists(st.tuples(*[st.integers(-32768, 32767)] * 3), min_size=1, max_size=40),
)
def test_every_good_accel_frame_decodes_to_its_samples(
    seq: int, samples: list[tuple[int, int, int]]
) -> None:
    import numpy as np

    frame = WearableStream("belt").feed(encode_accel(seq, np.array(samples, np.int16)), 0.0)
    assert frame is not None
    assert frame.samples_mg.tolist() == [list(s) for s in samples]  # type: ignore[union-attr]


def alert_payload(**over: Any) -> dict[str, Any]:
    alert = Alert(
        "0190a0a0-0000-7000-8000-000000000001",
        "h-0001",
        AlertType.FALL,
        Severity.CRITICAL,
        AlertState.RAISED,
        1_700_000_000.0,
        1_700_000_000.0,
        evidence={"peak_g": 3.4, "score": 0.97},
    )
    return {**alert.to_wire(), **over}


def nested(levels: int) -> bytes:
    """An object `levels` deep: {"a":{"a":...{}...}}."""
    return ('{"a":' * (levels - 1) + "{}" + "}" * (levels - 1)).encode()


def test_decode_shortcuts_keep_the_limits() -> None:
    """decode counts the nesting only when a text has more opening brackets than the limit,
    and looks at every string only when it has a backslash-u escape: the limits still hold
    at the edge, brackets inside strings never count, and NUL and lone surrogates never
    pass, escaped or raw."""
    assert decode(nested(MAX_DEPTH)) is not None
    with pytest.raises(ContractError, match="deeper"):
        decode(nested(MAX_DEPTH + 1))
    many = ('{"s":"' + "[{" * 40 + '","t":[1,[2]]}').encode()  # 80 brackets in a string
    assert nesting_depth(many) == 3
    assert decode(many)["t"] == [1, [2]]
    for bad in (b'{"a":"x\x00y"}', b'{"a":"\xed\xb2\x80"}', b'{"a":"\\udc80"}', b'{"a\\u0000":1}'):
        with pytest.raises(ContractError):
            decode(bad)
    assert decode(b'{"a":"\\\\u00e9","b":"\xc3\xa9"}') == {"a": "\\u00e9", "b": "\u00e9"}


@FUZZ
@given(st.sampled_from(sorted(LEAVES)), st.binary(max_size=200) | JSON.map(json.dumps))
def test_validators_refuse_anything_with_contract_error_only(leaf: str, raw: Any) -> None:
    payload = raw if isinstance(raw, bytes) else raw.encode()
    with contextlib.suppress(ContractError):
        validate_message(f"veille/v1/h-0001/{leaf}", payload)


HOURLY = {
    "schema": "veille.aggregate.hourly/1",
    "home_id": "h-0001",
    "period_start": "2024-01-01T10:00:00.000Z",
    "period_end": "2024-01-01T11:00:00.000Z",
    "rooms": {"cuisine": {"activity": 3, "door_openings": 1, "bed_min": 0.0}},
    "totals": {"activity": 3, "door_openings": 1, "entrance_openings": 0},
    "sensor_health": {"devices": 4, "offline": 0, "low_battery": 1, "unknown_devices": 0},
}
ACK = {
    "schema": "veille.ack/1",
    "home_id": "h-0001",
    "alert_id": "0190a0a0-0000-7000-8000-000000000001",
    "action": "acknowledged",
    "at": "2024-01-01T10:00:00.000Z",
    "by": "ana",
    "note": "",
}
SAMPLES = {"alert": alert_payload(), "aggregate/hourly": HOURLY, "ack": ACK}


@FUZZ
@given(st.sampled_from(sorted(SAMPLES)), st.data(), JSON)
def test_a_payload_with_one_field_changed_is_valid_or_refused_cleanly(
    leaf: str, data: st.DataObject, value: Any
) -> None:
    sample = SAMPLES[leaf]
    validate_message(f"veille/v1/h-0001/{leaf}", encode(sample))  # the sample itself is valid
    key = data.draw(st.sampled_from(sorted(sample)))
    with contextlib.suppress(ContractError):
        validate_message(f"veille/v1/h-0001/{leaf}", encode({**sample, key: value}))


@pytest.mark.parametrize(
    ("topic", "payload"),
    [
        ("veille/v1/h-0001/alert", alert_payload()),
        ("veille/v1/h-0002/alert", alert_payload()),  # another home's topic
        ("veille/v1/h-0001/alert", alert_payload(evidence={"samples": list(range(100))})),
        ("veille/v1/h-0001/alert", alert_payload(at="2024-01-01 10:00")),
        ("veille/v2/h-0001/alert", alert_payload()),
        ("veille/v1/H_BAD/alert", alert_payload()),
    ],
)
def test_validator_table(topic: str, payload: dict[str, Any]) -> None:
    ok = topic == "veille/v1/h-0001/alert" and payload == alert_payload()
    if ok:
        assert validate_message(topic, encode(payload))[0] == "alert"
    else:
        with pytest.raises(ContractError):
            validate_message(topic, encode(payload))
