"""The XMP packet a JPEG or WebP output carries: our JSON document in one
element of our own namespace, with the prompt as `dc:description` and the
creation time as `xmp:CreateDate` for other programs.

Reading takes the document back from the element (or the attribute form a
program that rewrites XMP may turn it into) by text search on a packet of
bounded size: no XML parser, so no entity expansion and no external entity.
"""

from __future__ import annotations

import html
import re
from xml.sax.saxutils import escape

# The APP1 segment of a JPEG that holds XMP starts with this (and a NUL).
JPEG_XMP_HEADER = b"http://ns.adobe.com/xap/1.0/\x00"
# An "extended XMP" segment: the continuation of a packet too big for one segment.
JPEG_XMP_EXTENSION = b"http://ns.adobe.com/xmp/extension/\x00"
NAMESPACE = "https://pixeldojo.ai/ns/cli/1.0/"

_PACKET = """<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>
<x:xmpmeta xmlns:x="adobe:ns:meta/">
 <rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">
  <rdf:Description rdf:about=""
    xmlns:xmp="http://ns.adobe.com/xap/1.0/"
    xmlns:dc="http://purl.org/dc/elements/1.1/"
    xmlns:pixeldojo="{namespace}">
   <xmp:CreatorTool>{tool}</xmp:CreatorTool>{created}{description}
   <pixeldojo:json>{document}</pixeldojo:json>
  </rdf:Description>
 </rdf:RDF>
</x:xmpmeta>
<?xpacket end="w"?>"""

_ELEMENT = re.compile(r"<pixeldojo:json>([^<]*)</pixeldojo:json>")
_ATTRIBUTE = re.compile(r"""pixeldojo:json\s*=\s*(?:"([^"]*)"|'([^']*)')""")
_QUOTES = {'"': "&quot;", "'": "&apos;"}


def _text(value: str) -> str:
    return escape(value, _QUOTES)


def packet(document: str, *, tool: str, prompt: str | None, created: str | None) -> bytes:
    """The XMP packet (UTF-8) holding `document` (JSON text)."""
    description = (
        '\n   <dc:description><rdf:Alt><rdf:li xml:lang="x-default">'
        f"{_text(prompt)}</rdf:li></rdf:Alt></dc:description>"
        if prompt
        else ""
    )
    when = f"\n   <xmp:CreateDate>{_text(created)}</xmp:CreateDate>" if created else ""
    text = _PACKET.format(
        namespace=NAMESPACE,
        tool=_text(tool),
        created=when,
        description=description,
        document=_text(document),
    )
    return text.encode("utf-8")


_OWN_DESCRIPTION = """
  <rdf:Description rdf:about="" xmlns:pixeldojo="{namespace}">
   <pixeldojo:json>{document}</pixeldojo:json>
  </rdf:Description>
 """
_RDF_END = b"</rdf:RDF>"


def merged(host: bytes, document: str) -> bytes | None:
    """Another program's XMP packet `host` with our document added as an
    `rdf:Description` of its own (theirs left as it was); None when the
    packet has no `rdf:RDF` element to add it to."""
    at = host.rfind(_RDF_END)
    if at < 0:
        return None
    ours = _OWN_DESCRIPTION.format(namespace=NAMESPACE, document=_text(document))
    return host[:at] + ours.encode("utf-8") + host[at:]


def is_ours(data: bytes) -> bool:
    """Whether an XMP packet holds a pixeldojo document (ours, or a claim to be)."""
    return NAMESPACE.encode() in data or b"pixeldojo:json" in data


def document_in(packet_text: str) -> str | None:
    """Our JSON document's text inside an XMP packet, None when it holds none."""
    match = _ELEMENT.search(packet_text) or _ATTRIBUTE.search(packet_text)
    if match is None:
        return None
    raw = next(group for group in match.groups() if group is not None)
    return html.unescape(raw)
