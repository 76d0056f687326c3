"""Refused requests: an HTTP status, a machine-readable code and a sentence saying why."""

from __future__ import annotations

from ..errors import DeepGazeError


class RequestRefused(DeepGazeError):
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
