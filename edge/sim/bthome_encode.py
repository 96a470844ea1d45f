"""BTHome v2 advertisement encoder for the simulated home (the inverse of what bthome-ble reads).

A BTHome v2 advertisement is service data under the 16-bit UUID 0xFCD2: one device-info byte
(bit 0 encrypted, bit 2 trigger-based, bits 5-7 the version: 0x40 plain, 0x41 encrypted),
then measurement objects, each an object id followed by its little-endian value, sorted by id.
Encrypted frames carry AES-CCM ciphertext of the objects, then a 4-byte little-endian counter
and a 4-byte MIC; the nonce is the MAC (as written, 6 bytes) + the UUID 0xFCD2 little-endian +
the device-info byte + the counter. Pure: bytes in, bytes out.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from dataclasses import dataclass

from cryptography.hazmat.primitives.ciphers.aead import AESCCM

BTHOME_UUID = "0000fcd2-0000-1000-8000-00805f9b34fb"
_UUID16_LE = b"\xd2\xfc"
DEVICE_INFO_V2 = 0x40
DEVICE_INFO_ENCRYPTED = 0x01
MIC_BYTES = 4


@dataclass(frozen=True, slots=True)
class ObjectType:
    """One BTHome v2 measurement object: id, struct format (little-endian) and factor."""

    object_id: int
    fmt: str
    factor: float


# The objects the simulated sensors send (ids and scaling as in the BTHome v2 format).
OBJECTS: Mapping[str, ObjectType] = {
    "packet_id": ObjectType(0x00, "<B", 1.0),
    "battery": ObjectType(0x01, "<B", 1.0),  # percent
    "temperature": ObjectType(0x02, "<h", 0.01),  # degrees Celsius
    "humidity": ObjectType(0x03, "<H", 0.01),  # percent
}


def encode_objects(values: Mapping[str, float]) -> bytes:
    """Measurement objects, sorted by object id: `{"temperature": 21.5, ...}` -> bytes."""
    parts: list[tuple[int, bytes]] = []
    for name, value in values.items():
        obj = OBJECTS[name]
        raw = round(value / obj.factor)
        parts.append((obj.object_id, bytes([obj.object_id]) + struct.pack(obj.fmt, raw)))
    return b"".join(chunk for _, chunk in sorted(parts))


def service_data_v2(
    values: Mapping[str, float], mac: str, bindkey: bytes | None = None, counter: int = 0
) -> bytes:
    """The BTHome v2 service-data bytes for `values`, encrypted when a bindkey is given."""
    payload = encode_objects(values)
    if bindkey is None:
        return bytes([DEVICE_INFO_V2]) + payload
    info = DEVICE_INFO_V2 | DEVICE_INFO_ENCRYPTED
    count = struct.pack("<I", counter & 0xFFFFFFFF)
    nonce = bytes.fromhex(mac.replace(":", "")) + _UUID16_LE + bytes([info]) + count
    sealed = AESCCM(bindkey, tag_length=MIC_BYTES).encrypt(nonce, payload, None)
    ciphertext, mic = sealed[:-MIC_BYTES], sealed[-MIC_BYTES:]
    return bytes([info]) + ciphertext + count + mic
