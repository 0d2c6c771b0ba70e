"""helpers.build_once: a test not about building gets a copy of a session-wide build,
rebuilt whenever anything that could change the compiler's output changed."""
from __future__ import annotations

import minildr
from helpers import build_once

SOURCE = '#include "value.h"\nint answer(void) { return VALUE; }\n'


def builds(monkeypatch) -> list:
    calls = []
    real = minildr.build

    def counting(*args, **kwargs):
        calls.append(kwargs["name"])
        return real(*args, **kwargs)
    monkeypatch.setattr(minildr, "build", counting)
    return calls


def answer(path) -> int:
    with minildr.open(path) as plugin:
        return plugin.lookup("answer", "int (void)")()


def test_the_same_inputs_are_built_once_and_each_call_gets_its_own_copy(tmp_path, monkeypatch):
    calls = builds(monkeypatch)
    src = tmp_path / "src"
    src.mkdir()
    (src / "once.c").write_text(SOURCE)
    (src / "once.h").write_text("int answer(void);\n")
    (src / "value.h").write_text("#define VALUE 1\n")

    def make(out: str, **kwargs):
        return build_once([src / "once.c"], name="once", exports=src / "once.h",
                          out_dir=tmp_path / out, **kwargs)
    first, second = make("a"), make("b")
    assert first != second and first.read_bytes() == second.read_bytes()
    assert answer(second) == 1 and len(calls) == 1
    (src / "value.h").write_text("#define VALUE 2\n")             # an included header changed
    assert answer(make("c")) == 2 and len(calls) == 2
    make("d", cflags=("-DUNUSED",))                                  # other arguments
    monkeypatch.setenv("CC", "cc")                                  # another compiler asked for
    make("e")
    assert len(calls) == 4
