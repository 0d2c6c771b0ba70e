"""An editor whose file formats and on-save linters are C plugins (course notebook 7).

    from examples.editor import Editor, build_plugins
    build_plugins("build/editor-plugins")
    with Editor() as editor:
        print(editor.load_plugins("build/editor-plugins"))
        buffer = editor.open("notes.qp")
        for d in editor.save(buffer):
            print(d)

Or from a shell: `python -m examples.editor FILE` (see __main__.py).
"""
from .builder import build_plugins
from .contracts import CONTRACTS, FORMAT, LINTER
from .core import Buffer, Diagnostic, Editor, EditorError

__all__ = ["Editor", "Buffer", "Diagnostic", "EditorError", "build_plugins", "FORMAT",
           "LINTER", "CONTRACTS"]
