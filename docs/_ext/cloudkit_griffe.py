"""A Griffe extension that prepares cloudkit_trio's docstrings for the reference pages.

The docstrings are written for readers of the source and of ``help()``: Google sections,
Sphinx-style roles (``:class:`Region```) and ``.. versionadded::`` lines. This extension,
run by mkdocstrings while it loads the package, turns them into what the Markdown pages
render:

* a role becomes a cross-reference to the object's entry in the reference, under the
  public name it is documented by (``cloudkit_trio.Region``, not the private module it is
  defined in), or plain code when the object has no entry (a private helper);
* attributes lose the labels that say how Python stores them;
* a paragraph's closing ``::`` (reST's literal block marker) becomes ``:``;
* ``#:`` comments above a module or class attribute become its docstring;
* ``.. versionadded:: X`` and ``.. versionchanged:: X`` become a line of emphasis;
* an attrs class gets the ``__init__`` that attrs generates for it, read from the class
  itself, so the reference shows the signature users call (``Operation(*, service, ...)``)
  and not ``Operation()``.
"""

from __future__ import annotations

import importlib
import inspect
import re
from typing import Any

import griffe

#: The modules with a reference page, deepest first: a name exported by several of them is
#: documented under the deepest (``cloudkit_trio.spi.AuthProvider``, which the package
#: root re-exports).
PUBLIC_MODULES: tuple[str, ...] = (
    "cloudkit_trio.actors",
    "cloudkit_trio.aws",
    "cloudkit_trio.redis",
    "cloudkit_trio.runtime",
    "cloudkit_trio.spi",
    "cloudkit_trio.testing",
    "cloudkit_trio.tracing",
    "cloudkit_trio.transport",
    "cloudkit_trio",
)

_INLINE_VERSION = re.compile(r"\(\.\. (versionadded|versionchanged):: ([^)\s]+)\)")
_LITERAL = re.compile(r"(\S)::[ \t]*$", re.M)
_LONE_LITERAL = re.compile(r"^[ \t]*::[ \t]*$", re.M)
_ROLE = re.compile(r":(?:py:)?(class|func|meth|attr|mod|exc|data|obj|const):`([^`]+)`")
_VERSION = re.compile(
    r"^(?P<indent>[ \t]*)\.\. (?P<kind>versionadded|versionchanged)::[ \t]*(?P<rest>.*)$"
    r"(?P<body>(?:\n(?P=indent)[ \t]+\S.*)*)",
    re.M,
)


def home_paths(package: griffe.Module) -> dict[str, str]:
    """Canonical path of every exported object -> the public path it is documented under."""
    homes: dict[str, str] = {}
    collection = package.modules_collection
    for module_path in PUBLIC_MODULES:
        try:
            module = collection[module_path]
        except KeyError:
            continue
        for name in module.exports or ():
            name = str(name)
            try:
                target = module[name]
                canonical = target.final_target.path if target.is_alias else target.path
            except (KeyError, griffe.AliasResolutionError, griffe.CyclicAliasError):
                continue
            homes.setdefault(canonical, f"{module_path}.{name}")
    for module_path in PUBLIC_MODULES:
        homes.setdefault(module_path, module_path)
    return homes


class CloudkitDocstrings(griffe.Extension):
    """Rewrite roles and version notes; give attrs classes their generated ``__init__``."""

    def on_package(self, *, pkg: griffe.Module, **kwargs: Any) -> None:
        if pkg.path != "cloudkit_trio":
            return
        self._homes = home_paths(pkg)
        self._collection = pkg.modules_collection
        seen: set[str] = set()
        self._walk(pkg, seen)

    # -- traversal -------------------------------------------------------------------

    def _walk(self, obj: griffe.Object, seen: set[str]) -> None:
        if obj.path in seen:
            return
        seen.add(obj.path)
        if isinstance(obj, griffe.Attribute):
            if obj.docstring is None:
                _docstring_from_comment(obj)
            # How Python stores a field is noise in a reference; "property" and the like stay.
            obj.labels -= {"class-attribute", "instance-attribute", "module-attribute"}
        if obj.docstring is not None:
            obj.docstring.value = self._rewrite(obj.docstring.value, obj)
        if isinstance(obj, griffe.Class):
            self._attrs_init(obj)
        for member in list(obj.members.values()):
            if member.is_alias:
                continue
            if member.is_module and not member.path.startswith("cloudkit_trio."):
                continue
            self._walk(member, seen)  # type: ignore[arg-type]

    # -- docstrings ------------------------------------------------------------------

    def _rewrite(self, text: str, scope: griffe.Object) -> str:
        text = _VERSION.sub(_version_note, text)
        text = _INLINE_VERSION.sub(_inline_version_note, text)
        # reST's "text::" before an indented block; the block is code in Markdown too.
        text = _LITERAL.sub(lambda match: match.group(1) + ":", text)
        text = _LONE_LITERAL.sub("", text)
        return _ROLE.sub(lambda match: self._role(match, scope), text)

    def _role(self, match: re.Match[str], scope: griffe.Object) -> str:
        kind, content = match.group(1), match.group(2).strip()
        title: str | None = None
        if content.endswith(">") and " <" in content:
            title, _, content = content[:-1].partition(" <")
        short = content.startswith("~")
        target = content.lstrip("~").lstrip(".")
        shown = title or (target.rsplit(".", 1)[-1] if short else target)
        if kind in {"func", "meth"} and not shown.endswith(")") and title is None:
            shown += "()"
        path = self._public_path(target, scope)
        if path is None:
            return f"`{shown}`"
        return f"[`{shown}`][{path}]"

    def _public_path(self, target: str, scope: griffe.Object) -> str | None:
        head, _, rest = target.partition(".")
        try:
            if target.startswith("cloudkit_trio"):
                full = target
            else:
                full = scope.resolve(head) + (f".{rest}" if rest else "")
        except (griffe.NameResolutionError, griffe.AliasResolutionError, AttributeError):
            return None
        try:
            obj = self._collection[full]
            canonical = obj.final_target.path if obj.is_alias else obj.path
        except (KeyError, griffe.AliasResolutionError, griffe.CyclicAliasError):
            return None
        # The object itself, or a member of an exported class.
        parts = canonical.split(".")
        for cut in range(len(parts), 0, -1):
            prefix = ".".join(parts[:cut])
            if prefix in self._homes:
                suffix = parts[cut:]
                if suffix and (
                    prefix in PUBLIC_MODULES
                    or any(part.startswith("_") for part in suffix)
                    or not _rendered(obj)
                ):
                    # A module's unexported helper, or a member with no entry.
                    return None
                return ".".join([self._homes[prefix], *suffix])
        return None

    # -- attrs -----------------------------------------------------------------------

    def _attrs_init(self, cls: griffe.Class) -> None:
        if "__init__" in cls.members or not any(
            str(getattr(decorator.value, "canonical_path", decorator.value)).startswith(
                ("attrs.", "attr.")
            )
            for decorator in cls.decorators
        ):
            return
        runtime = _runtime_object(cls)
        if runtime is None or not hasattr(runtime, "__attrs_attrs__"):
            return
        try:
            signature = inspect.signature(runtime.__init__)
        except (TypeError, ValueError):
            return
        fields = {field.alias: field for field in runtime.__attrs_attrs__}
        parameters = []
        for parameter in signature.parameters.values():
            default: str | None = None
            field = fields.get(parameter.name)
            if parameter.default is not inspect.Parameter.empty:
                default = _default_repr(field, parameter.default)
            # The field's declared type, not the converter's argument type attrs copies.
            annotation = field.type if field is not None and field.type else parameter.annotation
            parameters.append(
                griffe.Parameter(
                    parameter.name,
                    annotation=None if annotation is inspect.Parameter.empty else str(annotation),
                    kind=griffe.ParameterKind(parameter.kind.description),
                    default=default,
                )
            )
        init = griffe.Function(
            "__init__",
            lineno=cls.lineno,
            endlineno=cls.lineno,
            parent=cls,
            parameters=griffe.Parameters(*parameters),
            returns="None",
        )
        cls.set_member("__init__", init)
        # The fields are documented by the class's Args section; their attrs.field(...)
        # values say nothing a reader needs.
        for field in runtime.__attrs_attrs__:
            member = cls.members.get(field.name)
            if isinstance(member, griffe.Attribute):
                member.value = None


def _docstring_from_comment(attr: griffe.Attribute) -> None:
    """Read the ``#:`` comment lines right above an attribute as its docstring."""
    if not attr.lineno:
        return
    try:
        lines = attr.module.lines
    except (AttributeError, OSError):
        return
    found: list[str] = []
    index = attr.lineno - 2
    while index >= 0 and lines[index].lstrip().startswith("#:"):
        found.insert(0, lines[index].lstrip()[2:].removeprefix(" "))
        index -= 1
    if found:
        attr.docstring = griffe.Docstring(
            "\n".join(found), lineno=index + 2, endlineno=attr.lineno - 1, parent=attr
        )


def _version_note(match: re.Match[str]) -> str:
    indent, kind, rest = match.group("indent"), match.group("kind"), match.group("rest")
    version, _, note = rest.partition(" ")
    # The directive's indented body joins the note.
    note = " ".join([note, *(line.strip() for line in match.group("body").splitlines())])
    word = "Added" if kind == "versionadded" else "Changed"
    line = f"{indent}*{word} in version {version.strip()}.*"
    return f"{line} {note.strip()}" if note.strip() else line


def _inline_version_note(match: re.Match[str]) -> str:
    word = "added" if match.group(1) == "versionadded" else "changed"
    return f"(*{word} in version {match.group(2)}*)"


def _rendered(obj: griffe.Object | griffe.Alias) -> bool:
    """Whether mkdocstrings gives this member an entry (public; with or without a
    docstring, as ``show_if_no_docstring`` is on)."""
    target = obj.final_target if isinstance(obj, griffe.Alias) else obj
    return not target.name.startswith("_")


def _runtime_object(cls: griffe.Class) -> Any:
    try:
        value: Any = importlib.import_module(cls.module.path)
    except ImportError:
        return None
    for part in cls.path[len(cls.module.path) + 1 :].split("."):
        value = getattr(value, part, None)
        if value is None:
            return None
    return value


def _default_repr(field: Any, default: Any) -> str:
    import attrs

    if field is not None and isinstance(field.default, attrs.Factory):  # type: ignore[arg-type]
        factory = field.default.factory
        if not field.default.takes_self:
            try:
                return repr(factory())
            except Exception:  # a factory that needs context; name it instead
                pass
        return f"{getattr(factory, '__name__', 'factory')}()"
    return repr(default)
