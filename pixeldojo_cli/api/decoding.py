"""API answers decoded piece by piece, so that their size cap counts decoded
bytes: a small compressed answer cannot expand in memory (httpx's own decoders
expand a whole piece at once). Only the encodings asked for are undone."""

from __future__ import annotations

import time
import zlib
from collections.abc import Callable, Iterable, Iterator

import httpx

from pixeldojo_cli.core.errors import BadResponseError

# No API answer is this large; a bigger one is refused rather than held in memory.
# It counts decoded bytes (and, separately, the bytes on the wire).
MAX_API_BODY = 16 * 2**20

# What API requests accept: encodings `BoundedDecoder` undoes in bounded memory.
API_ACCEPT_ENCODING = "gzip, deflate"


class BodyTooLarge(Exception):
    """More bytes (on the wire, or decoded) than the cap allows."""


class _Inflater:
    """One gzip or deflate layer, undone a bounded piece at a time."""

    # Decoded bytes per step: what one layer holds at once beyond the body itself.
    STEP = 2**20

    def __init__(self, encoding: str) -> None:
        self._raw_fallback = encoding == "deflate"  # some servers send raw deflate
        wbits = 16 + zlib.MAX_WBITS if encoding == "gzip" else zlib.MAX_WBITS
        self._zlib = zlib.decompressobj(wbits)
        self._started = False

    def _step(self, data: bytes) -> bytes:
        try:
            out = self._zlib.decompress(data, self.STEP)
        except zlib.error:
            if not (self._raw_fallback and not self._started):
                raise
            self._zlib = zlib.decompressobj(-zlib.MAX_WBITS)
            out = self._zlib.decompress(data, self.STEP)
        self._started = True
        return out

    def pieces(self, data: bytes, final: bool) -> Iterator[bytes]:
        """`data` decoded, at most `STEP` bytes at a time (a full step may leave
        more waiting inside zlib, so ask again until a step comes back short)."""
        while True:
            out = self._step(data)
            if out:
                yield out
            data = self._zlib.unconsumed_tail
            if not data and len(out) < self.STEP:
                break
        if final:
            rest = self._zlib.flush()  # nothing is pending any more: this is small
            if rest:
                yield rest


class BoundedDecoder:
    """A response body's Content-Encoding undone as it arrives, never holding more
    than `limit` decoded bytes."""

    def __init__(self, content_encoding: str, limit: int) -> None:
        names = [n.strip().lower() for n in content_encoding.split(",") if n.strip()]
        names = [n for n in names if n != "identity"]
        unknown = [n for n in names if n not in ("gzip", "deflate", "x-gzip")]
        if unknown:
            raise BadResponseError(
                f"The API's answer is encoded with {unknown[0][:40]!r}, which this client "
                "did not ask for."
            )
        # The last encoding applied is the first to undo.
        self._layers = [_Inflater("gzip" if n == "x-gzip" else n) for n in reversed(names)]
        self.limit = limit
        self.body = bytearray()

    def _through(self, data: bytes, layers: list[_Inflater], final: bool) -> None:
        if not layers:
            if len(self.body) + len(data) > self.limit:
                raise BodyTooLarge
            self.body += data
            return
        for piece in layers[0].pieces(data, final):
            self._through(piece, layers[1:], final=False)
        if final and len(layers) > 1:
            self._through(b"", layers[1:], final=True)

    def feed(self, data: bytes) -> None:
        """Decode one piece from the wire; `BodyTooLarge` past the limit."""
        self._through(data, self._layers, final=False)

    def finish(self) -> bytes:
        """The whole decoded body, once the last piece has arrived."""
        if self._layers:
            self._through(b"", self._layers, final=True)
        return bytes(self.body)


def decode_body(
    chunks: Iterable[bytes],
    content_encoding: str,
    *,
    limit: int = MAX_API_BODY,
    after_each: Callable[[], None] = lambda: None,
) -> bytes:
    """The body that `chunks` (as they came off the wire) carry, decoded.

    `BodyTooLarge` once more than `limit` bytes arrive or decode; `zlib.error`
    when they do not decompress; `after_each` runs after every piece (a
    deadline check may raise there)."""
    decoder = BoundedDecoder(content_encoding, limit)
    on_wire = 0
    for chunk in chunks:
        on_wire += len(chunk)
        if on_wire > limit:
            raise BodyTooLarge
        decoder.feed(chunk)
        after_each()
    return decoder.finish()


def read_answer(http: httpx.Client, request: httpx.Request, deadline: float) -> httpx.Response:
    """Send `request` through `http`, then read the body against a deadline for the whole exchange.

    httpx's timeouts bound each read, so a server trickling a byte at a time
    could hold a request for ever; this bounds the total, and the size.
    """

    def in_time() -> None:
        if time.monotonic() > deadline:
            raise httpx.ReadTimeout("the response took too long", request=request)

    response = http.send(request, stream=True)
    try:
        if response.is_stream_consumed:
            # Read in full already (httpx.MockTransport), and decoded by httpx.
            body = decode_body([response.content], "", after_each=in_time)
        else:
            encoding = response.headers.get("content-encoding", "")
            body = decode_body(response.iter_raw(), encoding, after_each=in_time)
    except BodyTooLarge:
        raise BadResponseError(
            f"The API's answer to {request.method} {request.url.path} is larger "
            f"than {MAX_API_BODY // 2**20} MiB; refusing to read it."
        ) from None
    except zlib.error as exc:
        raise BadResponseError(
            f"The API's answer to {request.method} {request.url.path} could not be "
            f"decompressed ({exc})."
        ) from None
    finally:
        response.close()
    headers = response.headers.copy()
    for name in ("content-encoding", "content-length"):  # the body is decoded now
        headers.pop(name, None)
    return httpx.Response(
        response.status_code,
        headers=headers,
        content=body,
        request=request,
        extensions=response.extensions,
    )
