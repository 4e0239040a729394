"""XML from servers, read with the standard library's expat and nothing it does not need.

Cloud APIs never send a document type declaration, so any DTD, entity declaration or
external reference is refused outright: no entity is ever expanded (no "billion laughs", no
external entities), without a third-party dependency. The tree kept is small: local element
names (namespaces dropped) and their text.

Nesting is bounded too: a document deeper than :data:`MAX_DEPTH` elements is refused with
:class:`SerializationError` while it is read (cloud documents nest a handful of levels), and
nothing here recurses, so no body can raise :class:`RecursionError` in a caller. An error
body refused this way is simply not parsed for a provider code: the status decides.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Final
from xml.parsers import expat

import attrs

from ._errors import SerializationError

__all__ = ["MAX_DEPTH", "Element", "parse_xml"]

#: The deepest nesting accepted; S3's listings and every provider's error documents use < 10.
MAX_DEPTH: Final = 100


class _Refused(Exception):
    """A construct that could expand entities or fetch external resources."""


class _TooDeep(Exception):
    """Elements nested deeper than :data:`MAX_DEPTH`."""


@attrs.define(eq=False)
class Element:
    """An element's local name, its text and its child elements."""

    tag: str
    children: list[Element] = attrs.Factory(list)
    _parts: list[str] = attrs.Factory(list)

    @property
    def text(self) -> str:
        return "".join(self._parts)

    def add_text(self, data: str) -> None:
        self._parts.append(data)

    def find(self, tag: str) -> Element | None:
        return next((child for child in self.children if child.tag == tag), None)

    def find_all(self, tag: str) -> Iterator[Element]:
        return (child for child in self.children if child.tag == tag)

    def iter(self) -> Iterator[Element]:
        """This element and its descendants, depth first (without recursion)."""
        pending = [self]
        while pending:
            element = pending.pop()
            yield element
            pending.extend(reversed(element.children))

    def text_of(self, tag: str) -> str | None:
        """The text of the first child called ``tag``, or None when there is none."""
        child = self.find(tag)
        return None if child is None else child.text


def parse_xml(body: bytes, *, what: str) -> Element:
    """The root element of ``body``; :class:`SerializationError` naming ``what`` if unusable."""
    parser = expat.ParserCreate(namespace_separator=" ")
    parser.buffer_text = True
    parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
    stack: list[Element] = []
    roots: list[Element] = []

    def refuse(*_args: object) -> int:
        raise _Refused

    def start(name: str, _attributes: object) -> None:
        if len(stack) >= MAX_DEPTH:
            raise _TooDeep
        element = Element(name.rpartition(" ")[2])
        if stack:
            stack[-1].children.append(element)
        else:
            roots.append(element)
        stack.append(element)

    def end(_name: str) -> None:
        stack.pop()

    def text(data: str) -> None:
        if stack:
            stack[-1].add_text(data)

    parser.StartDoctypeDeclHandler = refuse
    parser.EntityDeclHandler = refuse
    parser.UnparsedEntityDeclHandler = refuse
    parser.ExternalEntityRefHandler = refuse
    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.CharacterDataHandler = text
    try:
        parser.Parse(body, True)
    except _Refused:
        raise SerializationError(
            f"the {what} document declares a DTD or entities, which cloud APIs never send; refused"
        ) from None
    except _TooDeep:
        raise SerializationError(
            f"the {what} document nests elements deeper than {MAX_DEPTH} levels; refused"
        ) from None
    except expat.ExpatError as error:
        raise SerializationError(f"the {what} document is not well-formed XML: {error}") from None
    if not roots:  # pragma: no cover - expat rejects a document without an element
        raise SerializationError(f"the {what} document has no root element")
    return roots[0]
