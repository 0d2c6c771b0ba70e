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


def test_contracts_are_keyed_on_their_text_not_only_their_name(tmp_path, monkeypatch):
    """Two contracts with one name and version but other text (a Contract's repr leaves its
    text out) are two builds: each plugin records its own contract's hash."""
    calls = builds(monkeypatch)
    src = tmp_path / "src"
    src.mkdir()
    (src / "sized.c").write_text("const thing_t sized = { 1 };\n")
    (src / "sized.h").write_text("extern const thing_t sized;\n")

    def thing(field: str) -> minildr.Contract:
        return minildr.Contract.from_header(f"typedef struct thing {{ {field} value; }} thing_t;\n",
                                            name="thing", version="1.0")

    def make(out: str, contract: minildr.Contract):
        path = build_once([src / "sized.c"], name="sized", exports=src / "sized.h",
                          out_dir=tmp_path / out, contracts=(c for c in [contract]))
        return minildr.read_manifest(path).contracts["thing"].sha256
    narrow, wide = thing("int"), thing("long")
    assert make("a", narrow) == narrow.sha256 and make("b", narrow) == narrow.sha256
    assert len(calls) == 1                                           # the same contract: once
    assert make("c", wide) == wide.sha256 and len(calls) == 2
