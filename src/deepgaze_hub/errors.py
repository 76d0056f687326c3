"""The base class of every error a user can cause and fix; the CLI prints these without a traceback."""


class DeepGazeError(Exception):
    """Something about the user's input, files or settings is wrong; the message says what to do."""
