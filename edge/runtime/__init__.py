"""The running gateway: the async shell around the pure core, its clock and systemd."""
