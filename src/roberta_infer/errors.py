"""The one exception type the CLI turns into a clean one-line error."""


class RobertaInferError(Exception):
    """Bad input or an unusable file: the message is shown to the user as is, without a traceback."""
