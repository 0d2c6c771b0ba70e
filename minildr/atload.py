"""What a library runs when it is loaded, read from the file without loading it.

Loading a shared library runs its code before the host calls anything:
while the loader relocates it, each IFUNC resolver (STT_GNU_IFUNC symbols,
IRELATIVE relocations) is called to choose an implementation; then DT_INIT,
then each DT_INIT_ARRAY entry in order (gABI "Initialization and
Termination Functions"; Drepper, "How To Write Shared Libraries", 1.5.6
"Running the Constructors": relocation first, then initialisers; IFUNC is
younger than that paper: in glibc, elf/dl-reloc.c relocates and each
architecture's dl-machine.h, elf_machine_rela, calls the resolver). `code_run_at_load` lists them in that
order with the names the file gives them, so `python -m minildr inspect`
shows a reviewer what would run before deciding to load it.

A DT_INIT_ARRAY slot holds a function's address once relocated: the
address is the RELATIVE relocation's addend for that slot, or the word in
the file (DT_RELR keeps the addend there).
"""
from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Dict, List

from .errors import NotAPlugin
from .formats import elf


@dataclass(frozen=True)
class RunAtLoad:
    """One piece of code a load runs: when, where (address in the file), and its name."""
    when: str          # "IFUNC resolver", "DT_INIT", "DT_INIT_ARRAY[0]", ...
    address: int
    name: str          # the symbol names at that address, or "?" (stripped)

    def __str__(self) -> str:
        return f"{self.when:<18} {self.address:#08x}  {self.name}"


def _names_by_address(f: elf.ElfFile, dyn: elf.DynamicSection) -> Dict[int, List[str]]:
    """Function names by address: the full symbol table if the file kept it, and .dynsym."""
    names: Dict[int, List[str]] = {}
    symbols = [(s.value, s.name, s.type) for s in _section_symbols(f)]
    symbols += [(sym.st_value, name, "FUNC" if sym.st_info & 0xF == elf.STT_FUNC else "")
                for sym, name in dyn.symbols() if sym.st_shndx != elf.SHN_UNDEF]
    for value, name, kind in symbols:
        if name and kind == "FUNC" and name not in names.setdefault(value, []):
            names[value].append(name)
    return names


def _section_symbols(f: elf.ElfFile) -> List[elf.Symbol]:
    try:
        return f.symbols(elf.SHT_SYMTAB)
    except NotAPlugin:                  # no usable section headers: names from .dynsym only
        return []


def code_run_at_load(data: bytes, path: str) -> List[RunAtLoad]:
    """Every IFUNC resolver, DT_INIT and DT_INIT_ARRAY entry of an ELF file, in running order."""
    f = elf.ElfFile(data, path)
    dyn = elf.DynamicSection(f)
    names = _names_by_address(f, dyn)
    def name(address: int) -> str:
        return " / ".join(names.get(address, [])) or "?"
    relative = elf.R_RELATIVE.get(f.header.e_machine)
    irelative = elf.R_IRELATIVE.get(f.header.e_machine)
    relocations = dyn.relocations()
    found: List[RunAtLoad] = []
    for sym, sym_name in dyn.symbols():
        if sym.st_info & 0xF == elf.STT_GNU_IFUNC and sym.st_shndx != elf.SHN_UNDEF:
            found.append(RunAtLoad("IFUNC resolver", sym.st_value,
                                   f"{name(sym.st_value)} (chooses {sym_name})"))
    listed = {r.address for r in found}
    for r in relocations:
        if elf.ELF64_R_TYPE(r.r_info) == irelative and r.r_addend not in listed:
            listed.add(r.r_addend)
            found.append(RunAtLoad("IFUNC resolver", r.r_addend, name(r.r_addend)))
    if dyn.has(elf.DT_INIT):
        found.append(RunAtLoad("DT_INIT", dyn.get(elf.DT_INIT), name(dyn.get(elf.DT_INIT))))
    if dyn.has(elf.DT_INIT_ARRAY):
        start, size = dyn.get(elf.DT_INIT_ARRAY), dyn.get(elf.DT_INIT_ARRAYSZ)
        addends = {r.r_offset: r.r_addend for r in relocations
                   if elf.ELF64_R_TYPE(r.r_info) == relative}
        for i, slot in enumerate(range(start, start + size - size % 8, 8)):
            if slot in addends:
                target = addends[slot]
            else:
                at = f.file_offset(slot, 8, "DT_INIT_ARRAY entry")
                target = struct.unpack_from(f"{f.order}Q", f.data, at)[0]
            found.append(RunAtLoad(f"DT_INIT_ARRAY[{i}]", target, name(target)))
    return found
