"""The exporters' one error type, below every exporter module so that each can raise it."""


class ExportError(ValueError):
    """The requested export cannot be made; the message says what to change."""
