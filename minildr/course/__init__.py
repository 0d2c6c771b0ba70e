"""Course tooling: what the notebooks and exercises use, beside (not inside) the loader.

    magic.py      %%minildr, the cell magic (`%load_ext minildr`)
    exercises.py  make exercises: solutions/ -> exercises/, nbgrader's markers
    selfcheck.py  make check: run a learner's exercise notebooks, list tasks done
    runs_on.py    which cells run on which platform (linux-only, posix-only)
    golang.py     notebook 09: a real Go toolchain, workspaces, c-shared builds
    golinks.py    the tests' earlier Go links, offered to Go's own up-to-date check
    version.py    each notebook's first check: is this kernel's minildr the course's?
    figures.py    the notebooks' pictures, so that cells show the idea, not matplotlib

Someone maintaining the loader can skip this folder.
"""
