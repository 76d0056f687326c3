"""Reading a ``multipart/form-data`` request body that has already been received in full.

The body arrives through the service's upload checks first (size limit, upload timeout, upload
slots: limits.py), so parsing works on bytes of bounded size. `parse_form` is strict: one
boundary from the Content-Type header, a closing delimiter, ``Content-Disposition: form-data``
with a name on every part, each name at most once, at most ``max_parts`` parts. Every failure is a
`RequestRefused` (415 when the body is not a form, 400 when the form is malformed).
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import RequestRefused

#: Parts one form may have (the scanpath protocol sends two: ``stimulus`` and ``json_data``).
MAX_PARTS = 8
#: Largest header block of one part, in bytes.
MAX_PART_HEADER_BYTES = 8192


@dataclass(frozen=True)
class FormPart:
    """One field of a form: its name, the file name it was sent with (None for a plain field),
    its declared Content-Type (None when not given) and its bytes."""

    name: str
    filename: str | None
    content_type: str | None
    data: bytes


def header_parameters(value: str) -> tuple[str, dict[str, str]]:
    """``'form-data; name="a"; filename="b.png"'`` -> ``('form-data', {'name': 'a', 'filename': 'b.png'})``.

    Parameter names are lower-cased; quoted values may contain ``;`` and backslash escapes.
    """
    items: list[str] = []
    current, quoted, escaped = [], False, False
    for char in value:
        if escaped:
            current.append(char)
            escaped = False
        elif quoted and char == "\\":
            escaped = True
        elif char == '"':
            quoted = not quoted
        elif char == ";" and not quoted:
            items.append("".join(current))
            current = []
        else:
            current.append(char)
    items.append("".join(current))
    params = {}
    for item in items[1:]:
        key, sep, raw = item.partition("=")
        if sep:
            params[key.strip().lower()] = raw.strip()
    return items[0].strip().lower(), params


def form_boundary(content_type: str | None, hint: str) -> bytes:
    """The boundary of a ``multipart/form-data`` Content-Type; 415 (with ``hint``) for anything else."""
    kind, params = header_parameters(content_type or "")
    if kind != "multipart/form-data":
        raise RequestRefused(
            415, "form_expected", f"this endpoint takes a multipart/form-data body, got {content_type or 'none'}; {hint}"
        )
    boundary = params.get("boundary", "")
    if not 1 <= len(boundary) <= 70 or not boundary.isascii():
        raise RequestRefused(400, "malformed_form", "the multipart Content-Type has no usable boundary parameter")
    return boundary.encode("ascii")


def parse_form(body: bytes, content_type: str | None, hint: str = "") -> dict[str, FormPart]:
    """The parts of a ``multipart/form-data`` body, by field name (see the module docstring)."""
    delimiter = b"\r\n--" + form_boundary(content_type, hint)
    chunks = (b"\r\n" + body).split(delimiter)
    if len(chunks) < 2:
        raise _malformed("no part starts with the boundary of the Content-Type header")
    if len(chunks) - 2 > MAX_PARTS:
        raise _malformed(f"more than {MAX_PARTS} parts")
    parts: dict[str, FormPart] = {}
    for chunk in chunks[1:-1]:
        part = _read_part(chunk)
        if part.name in parts:
            raise _malformed(f"the field {part.name!r} is sent more than once")
        parts[part.name] = part
    if not chunks[-1].startswith(b"--"):
        raise _malformed("the body ends before the closing boundary (truncated?)")
    return parts


def _read_part(chunk: bytes) -> FormPart:
    """One part: the bytes between two delimiters (a line end, headers, a blank line, the data)."""
    rest = chunk.lstrip(b" \t")  # transport padding may follow a boundary
    if not rest.startswith(b"\r\n"):
        raise _malformed("a boundary line is followed by other text")
    start = len(chunk) - len(rest) + 2
    end = chunk.find(b"\r\n\r\n", start - 2)
    if end < 0 or end - start > MAX_PART_HEADER_BYTES:
        raise _malformed("a part has no blank line after its headers")
    headers: dict[str, str] = {}
    for line in chunk[start:end].split(b"\r\n") if end > start else []:
        name, sep, value = line.decode("latin-1").partition(":")
        if not sep:
            raise _malformed(f"a part has a malformed header line {line[:60]!r}")
        headers[name.strip().lower()] = value.strip()
    kind, params = header_parameters(headers.get("content-disposition", ""))
    if kind != "form-data" or not params.get("name"):
        raise _malformed("a part has no 'Content-Disposition: form-data; name=...' header")
    return FormPart(params["name"], params.get("filename"), headers.get("content-type"), chunk[end + 4 :])


def _malformed(problem: str) -> RequestRefused:
    return RequestRefused(400, "malformed_form", f"the multipart/form-data body is malformed: {problem}")
