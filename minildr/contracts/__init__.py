"""Contracts: a header both sides include, its content hash, and the proxy objects.

    contract.py     Contract: canonical text, hash, versions, compatibility
    layout.py       struct layouts read from C declarations; the append-only rule
    convention.py   the calling convention of minildr.h: what each method is
    proxy.py        a vtable as a Python object (generated methods), bind()
    stubs.py        typing.Protocol text for editors
"""
from .contract import Contract

__all__ = ["Contract"]
