"""The hub reaches people: `notify.toml`, the escalation chain and its channels.

`config` reads the file (DESIGN.md section 8), `chain` is the pure escalation policy, and
each channel (`mail`, `sia`, `webpush`) is a small module with one job. `message` renders
what a person reads; `contact_id` and `dc09` are the monitoring centre's wire format.
"""
