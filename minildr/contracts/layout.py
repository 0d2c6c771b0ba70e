"""Struct layouts read from C declarations, and the append-only rule between two versions.

A vtable is only as good as the agreement on its layout: if the host thinks
field 3 is `run` and the plugin put `help` there, the host calls the wrong
function. So before a proxy is built, the host's view of each struct (from
its contract header) is compared with the plugin's (from the declarations
its manifest carries), field by field, names and C types both.

The rule the comparison enforces is the one `minildr.h` documents:
a vtable (a struct whose first field is `size_t struct_size`) may GROW at
its end between minor versions; any other difference, and any difference at
all in the other types both sides declare (records, enums, typedefs), means
the two were not built against compatible versions of the contract.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

from .. import ctype
from ..lazy_pycparser import c_ast, c_generator

SIZE_FIELD = ("struct_size", "size_t")


@dataclass(frozen=True)
class Field:
    """One field of a struct: its name, its canonical C type, and its declarator."""
    name: str
    ctype: str                                     # canonical spelling, e.g. 'const char *(*)(void)'
    node: c_ast.Node = field(compare=False, repr=False)   # the declarator, for the proxy


@dataclass(frozen=True)
class Struct:
    """A struct's layout as the append-only rule compares it: its fields in order."""
    name: str                                      # 'command_t' or 'struct command'
    fields: Tuple[Field, ...]

    @property
    def evolvable(self) -> bool:
        """Its first field states its size, so it may grow by appending fields."""
        return bool(self.fields) and (self.fields[0].name, self.fields[0].ctype) == SIZE_FIELD

    def field(self, name: str) -> Optional[Field]:
        return next((f for f in self.fields if f.name == name), None)


class Declarations:
    """The types some C declarations define: structs (by every name), enums, typedefs.

    `text` is preprocessed C (a manifest's `types`, or a contract after
    `contract.preprocess`); the stand-in standard types may be used in it.
    """

    def __init__(self, text: str, source: str = "<declarations>") -> None:
        standard = len(ctype.parse(ctype.STANDARD_TYPES).ext)
        nodes = ctype.parse(f"{ctype.STANDARD_TYPES}\n{text}", source).ext[standard:]
        self.nodes: List[c_ast.Node] = nodes
        self.structs: Dict[str, Struct] = {}
        self.others: Dict[str, str] = {}           # enum / typedef name -> its definition
        by_tag: Dict[str, c_ast.Struct] = {}
        for node in nodes:                          # struct definitions first: typedefs refer to them
            for struct in _struct_definitions(node):
                if struct.name:
                    by_tag[struct.name] = struct
                    self.structs[f"struct {struct.name}"] = _read_struct(f"struct {struct.name}",
                                                                         struct)
        for node in nodes:
            if isinstance(node, c_ast.Typedef):
                target = node.type.type if isinstance(node.type, c_ast.TypeDecl) else None
                if isinstance(target, c_ast.Struct):
                    definition = target if target.decls is not None else by_tag.get(target.name)
                    if definition is not None:
                        self.structs[node.name] = _read_struct(node.name, definition)
                        continue
                self.others[node.name] = ctype.spell(node.type)
            for enum in _enum_definitions(node):
                if enum.name:
                    self.others[f"enum {enum.name}"] = c_generator.CGenerator().visit(enum)

    def struct(self, type_name: str) -> Optional[Struct]:
        """The struct a variable of type `type_name` ('const command_t') is, if declared."""
        words = [w for w in type_name.split() if w not in ("const", "volatile")]
        return self.structs.get(" ".join(words))

    def names(self) -> List[str]:
        """Every type name, typedef names before 'struct tag' names (messages use the former)."""
        return sorted([*self.structs, *self.others], key=lambda n: n.startswith("struct "))


def _struct_definitions(node: c_ast.Node):
    if isinstance(node, c_ast.Struct) and node.decls is not None:
        yield node
    for _, child in node.children():
        yield from _struct_definitions(child)


def _enum_definitions(node: c_ast.Node):
    if isinstance(node, c_ast.Enum) and node.values is not None:
        yield node
    for _, child in node.children():
        yield from _enum_definitions(child)


def _read_struct(name: str, struct: c_ast.Struct) -> Struct:
    fields = tuple(Field(d.name, ctype.spell(d.type), d.type) for d in struct.decls or ())
    return Struct(name, fields)


# ---------------------------------------------------------------------------
# The append-only rule
# ---------------------------------------------------------------------------
def compare_struct(host: Struct, plugin: Struct) -> Optional[str]:
    """None if one is the other plus fields at the end (and may grow); else what differs."""
    if host.evolvable != plugin.evolvable:
        return (f"{host.name} starts with 'size_t struct_size' on one side only (the "
                f"{'host' if host.evolvable else 'plugin'}'s), so its size cannot be known")
    for number, (mine, theirs) in enumerate(zip(host.fields, plugin.fields), 1):
        if mine.name != theirs.name or mine.ctype != theirs.ctype:
            return (f"field {number} of {host.name} is '{_show(mine)}' in the host's contract "
                    f"but '{_show(theirs)}' in the plugin")
    if len(host.fields) != len(plugin.fields) and not host.evolvable:
        longer, extra = ((host, host.fields[len(plugin.fields)]) if len(host.fields) > len(plugin.fields)
                         else (plugin, plugin.fields[len(host.fields)]))
        side = "host's contract" if longer is host else "plugin"
        return (f"{host.name} has {len(host.fields)} field(s) in the host's contract and "
                f"{len(plugin.fields)} in the plugin (field '{_show(extra)}' only in the {side}), "
                f"and it cannot grow: its first field is not 'size_t struct_size'")
    return None


def compare(host: Declarations, plugin: Declarations, names: Optional[List[str]] = None
            ) -> Optional[str]:
    """The first difference between the types both declare, or None if compatible.

    Vtables (evolvable structs) may differ by appended fields; every other
    struct, enum and typedef must be identical, because arrays of records and
    enum values leave no room to grow.
    """
    for name in names if names is not None else host.names():
        if name in host.structs and name in plugin.structs:
            mine, theirs = host.structs[name], plugin.structs[name]
            problem = compare_struct(mine, theirs)
            if problem:
                return problem
        elif name in host.others and name in plugin.others:
            if host.others[name] != plugin.others[name]:
                return (f"{name} is '{host.others[name]}' in the host's contract but "
                        f"'{plugin.others[name]}' in the plugin")
        elif name in host.structs and name in plugin.others or \
                name in host.others and name in plugin.structs:
            return f"{name} is a struct on one side and not on the other"
    return None


def _show(f: Field) -> str:
    """'const char *(*name)(void)' style: the field as a declaration."""
    decl = c_ast.Decl(name=f.name, quals=[], align=[], storage=[], funcspec=[],
                      type=f.node, init=None, bitsize=None)
    return c_generator.CGenerator().visit(decl)
