"""What the gateway keeps on disk: the outbox, the alarm journal, the registry, the state."""
