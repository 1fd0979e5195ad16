"""Business operations. Views and CLI commands call these; they never call Stripe directly."""


class ServiceError(Exception):
    """A failed business operation, with a message fit to show staff."""

    def __init__(self, message: str, *, field: str | None = None):
        super().__init__(message)
        self.message = message
        self.field = field
