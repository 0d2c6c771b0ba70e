"""Course tooling: what the notebooks and exercises use, beside (not inside) the loader.

    version.py    the first cell's check: is this kernel's minildr the course's?

Someone maintaining the loader can skip this folder.
"""
