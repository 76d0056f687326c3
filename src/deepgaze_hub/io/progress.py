"""When to draw progress bars: only on a terminal, and never when the user asked for quiet.

Progress bars (tqdm, Lightning's) redraw one line with carriage returns; written into a log file or
a pipe they become kilobytes of noise. Callers decide once (the command line from ``--quiet`` and
whether stderr is a terminal) and pass the answer down as a ``progress: bool`` parameter.
"""

from __future__ import annotations

import sys
from typing import TextIO


def progress_wanted(quiet: bool = False, stream: TextIO | None = None) -> bool:
    """True when bars should be drawn: not ``quiet`` and ``stream`` (default: stderr) is a terminal."""
    stream = sys.stderr if stream is None else stream
    if quiet or stream is None:
        return False
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty()) if isatty is not None else False
    except (OSError, ValueError):  # a closed stream
        return False
