"""Versioned SQL schemas, loaded with importlib.resources (`outbox_v1.sql`, `outbox_v2.sql`, ...).

`outbox_v1.sql` creates the tables; each later `outbox_vN.sql` migrates vN-1 to vN. A file is
run in one transaction together with `PRAGMA user_version = N`.
"""
