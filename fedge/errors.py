"""The base of errors that mean "your input is wrong, here is how to fix it"."""


class FedgeError(Exception):
    """A user-facing error: the CLI prints its message without a traceback."""
