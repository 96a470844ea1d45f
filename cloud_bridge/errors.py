"""The few exception classes the gateway raises on purpose."""


class VeilleError(Exception):
    """A failure to report to the user in one line (the CLI prints it, exit code 1)."""


class ConfigError(VeilleError):
    """A configuration or home file that cannot be used."""


class StorageError(VeilleError):
    """A storage file that cannot be opened, read or repaired."""
