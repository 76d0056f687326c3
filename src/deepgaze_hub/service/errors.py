"""Refused requests inside the service: an HTTP status, a machine-readable code and a sentence.

`RequestRefused` is the service's own signal from a check to the error handler (app.py), not
part of the package's public errors: library errors (`deepgaze_hub.errors.DeepGazeError`) that
reach a handler are mapped to 4xx answers there.
"""

from __future__ import annotations


class RequestRefused(Exception):
    """A request the service will not serve; it becomes a 4xx JSON error response.

    The body is ``{"error": {"status": ..., "code": ..., "message": ...}}``; ``code`` is a stable
    identifier such as ``"upload_too_large"``, ``message`` says what was wrong and what to do.
    """

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}

    def body(self) -> dict:
        return {"error": {"status": self.status, "code": self.code, "message": self.message}}
