"""Gateway-wide constants, each named with its unit (add yours here, one line each)."""

from __future__ import annotations

# Time (every module that counts minutes, hours or days takes them from here)
MINUTE_S = 60.0
HOUR_S = 3600.0
DAY_S = 86400.0

# Outbox (edge.storage.outbox)
OUTBOX_MAX_BYTES = 50 * 1024 * 1024  # queued rows past this: oldest aggregates are dropped
OUTBOX_ROW_OVERHEAD_BYTES = 48  # estimated per-row cost (key, index entry, record header)
OUTBOX_DISK_FULL_FREE_BYTES = 256 * 1024  # aggregates dropped per try when the disk is full
OUTBOX_WAL_LIMIT_BYTES = 4 * 1024 * 1024  # WAL file size kept after a checkpoint
OUTBOX_BUSY_TIMEOUT_S = 5.0  # wait for another connection's write lock (veille log, tools)
OUTBOX_FILE = "outbox.db"
OUTBOX_RESERVE_BYTES = 1024 * 1024  # space held in `outbox.db.reserve`, freed on a full disk
OUTBOX_FULL_DISK_WAL_PAGES = 16  # WAL auto-checkpoint once the disk was found full

# Registry (edge.storage.registry)
REGISTRY_FILE = "registry.json"
STORAGE_DIR_MODE = 0o700
STORAGE_FILE_MODE = 0o600
SECRET_SALT_BYTES = 16
SECRET_SCRYPT_N = 2**14  # about 16 MiB and well under 0.1 s on a Raspberry Pi 4
SECRET_SCRYPT_R = 8
SECRET_SCRYPT_P = 1
SECRET_HASH_BYTES = 32
PRIORITY_ALERT = 0  # outbox rows drain by priority, then by seq
PRIORITY_AGGREGATE = 1
