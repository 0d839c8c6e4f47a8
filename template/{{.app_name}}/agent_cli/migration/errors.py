"""The two ways a migration stops."""


class MigrationError(Exception):
    """Bad input, found before anything was written: the project is left untouched."""


class StepFailed(Exception):
    """A step after the project was changed failed (installing, verifying): said as-is."""
