"""Reading a request body under granian's RSGI, with a size limit: the model server's and
the router's one way of doing it.

With a Content-Length, the server frames the body by it (the caller has checked it
against the limit already): it is read in one piece, the fast path. Chunked, the size
is known only while reading: reading stops at the limit instead of buffering whatever
the client sends; the caller answers 413 and the rest is never read (the server closes
the connection).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


async def read_body(
    protocol: Any, content_length: int | None, limit: int, too_large: Callable[[], Exception]
) -> bytes:
    """The body of the request ``protocol`` carries; ``too_large()`` is raised past ``limit``."""
    if content_length is not None:
        body: bytes = await protocol()
        return body
    chunks: list[bytes] = []
    size = 0
    async for chunk in protocol:
        size += len(chunk)
        if size > limit:
            raise too_large()
        chunks.append(chunk)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def parse_length(value: bytes | str) -> int | None:
    """A Content-Length header's value; None when it is not a number."""
    try:
        return int(value)
    except ValueError:
        return None
