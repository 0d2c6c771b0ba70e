"""Progress bars: a bar on a terminal, a widget in a notebook, silence in a log."""
from __future__ import annotations

import io
import sys
from pathlib import Path

import pytest

import minildr
from minildr.progress import progress
from helpers import ROOT



class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_quiet_where_nobody_watches(monkeypatch):
    log = io.StringIO()                       # a CI log: not a terminal
    monkeypatch.setattr(sys, "stderr", log)
    assert list(progress(range(5), desc="work")) == [0, 1, 2, 3, 4]
    assert log.getvalue() == ""


def test_a_bar_on_a_terminal(monkeypatch):
    screen = Terminal()
    monkeypatch.setattr(sys, "stderr", screen)
    assert list(progress(iter("abc"), desc="letters", total=3, unit="letter")) == ["a", "b", "c"]
    text = screen.getvalue()
    assert "letters" in text and "3/3" in text and "100%" in text


def test_a_bar_keeps_nothing_it_counted(monkeypatch):
    """A bar stays on the page after the loop (leave=True); the items must not stay with
    it (a benchmark's looked-up functions would keep a closed plugin mapped). A list is
    counted by its length: the bar shows n/N without being given the list."""
    import gc
    import weakref

    class Item:
        pass
    screen = Terminal()
    monkeypatch.setattr(sys, "stderr", screen)
    items = [Item(), Item()]
    watch = weakref.ref(items[0])
    was = gc.isenabled()
    gc.disable()
    try:
        bars = []
        from tqdm import tqdm
        monkeypatch.setattr(tqdm, "__init__", _remembering(tqdm.__init__, bars))
        assert len(list(progress(items, desc="items"))) == 2
        del items
        assert watch() is None, "the bar kept the items it counted"
        assert bars, "no bar was drawn: nothing shown"
    finally:
        if was:
            gc.enable()
    assert "2/2" in screen.getvalue()


def _remembering(init, bars):
    def remembering(self, *args, **kwargs):
        bars.append(self)              # kept alive here, as a notebook's widget keeps it
        init(self, *args, **kwargs)
    return remembering


def _job(tmp_path: Path, name: str, body: str) -> dict:
    src = tmp_path / "src" / name
    src.mkdir(parents=True)
    (src / f"{name}.c").write_text(f"int {name}(void) {{ {body} }}\n")
    (src / f"{name}.h").write_text(f"int {name}(void);\n")
    return dict(sources=[src / f"{name}.c"], name=name, exports=src / f"{name}.h",
                out_dir=tmp_path / "out")


def test_build_many_builds_each_in_order_with_a_bar(tmp_path, monkeypatch):
    screen = Terminal()
    monkeypatch.setattr(sys, "stderr", screen)
    jobs = [_job(tmp_path, f"p{i}", f"return {i};") for i in range(3)]
    paths = minildr.build_many(jobs)
    assert [p.name for p in paths] == [f"p{i}{minildr.SUFFIX}" for i in range(3)]
    for i, path in enumerate(paths):
        with minildr.open(path) as plugin:
            assert plugin.lookup(f"p{i}", "int (void)")() == i
    assert "building plugins" in screen.getvalue() and "3/3" in screen.getvalue()


def test_build_many_stops_at_the_first_broken_plugin(tmp_path):
    jobs = [_job(tmp_path, "good", "return 1;"), _job(tmp_path, "bad", "return nope;"),
            _job(tmp_path, "later", "return 3;")]
    with pytest.raises(minildr.BuildError) as err:
        minildr.build_many(jobs, show_progress=False)
    assert "bad.c" in str(err.value) and "nope" in str(err.value)
    assert (tmp_path / "out" / f"good{minildr.SUFFIX}").exists()
    assert not (tmp_path / "out" / f"later{minildr.SUFFIX}").exists()


def test_a_widget_in_a_notebook():
    """Run the bar in a real Jupyter kernel: it must send a widget, not text."""
    from jupyter_client.manager import start_new_kernel
    km, kc = start_new_kernel(kernel_name="python3", cwd=str(ROOT))
    try:
        prefix = []
        kc.execute_interactive("import sys; print(sys.prefix)", timeout=60,
                               output_hook=lambda msg: prefix.append(msg["content"].get("text", "")))
        assert "".join(prefix).strip() == sys.prefix, "the python3 kernel is not this environment's"
        outputs = []
        reply = kc.execute_interactive(
            "from minildr.progress import progress\n"
            "total = sum(progress(range(10), desc='counting'))\nprint(total)",
            timeout=60, output_hook=lambda msg: outputs.append(msg))
        assert reply["content"]["status"] == "ok", reply["content"]
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
    kinds = set()
    for msg in outputs:
        kinds.update(msg["content"].get("data", {}))
    printed = "".join(m["content"].get("text", "") for m in outputs
                      if m["msg_type"] == "stream" and m["content"]["name"] == "stdout")
    assert "application/vnd.jupyter.widget-view+json" in kinds, kinds
    assert "45" in printed
