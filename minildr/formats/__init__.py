"""The binary formats a plugin comes in, read-only and bounds-checked.

    reader.py   Reader, Record, declare, sizeof: every offset checked, or NotAPlugin
    elf.py      ELF (Linux): the gABI's structures, used by the manifest reader and minildr.native
    macho.py    Mach-O (macOS): load commands, sections, the export trie
    pe.py       PE/COFF (Windows): sections, the export directory
"""
