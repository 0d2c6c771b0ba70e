"""minildr.course.golinks: earlier Go links offered to Go's up-to-date check, never trusted.

The builds are a tiny Go program (internal linking, ~0.2 CPU s a link) in
workspaces of tmp_path, each with a link cache of its own, and `-x` so that
Go's output says whether it ran its linker.
"""
from __future__ import annotations

import hashlib
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from minildr.course import golang, golinks
from helpers import stress
from kernel_profile import learner_env

FLAGS = ["-x"]          # Go prints the commands it runs: a link shows as `.../link -o ...`


def _linked(result: golang.Result) -> bool:
    return "/link -o " in result.output


def _sources(folder: Path, text: str) -> Path:
    """A module whose main package prints what its `words` package says."""
    (folder / "hello" / "words").mkdir(parents=True)
    (folder / "hello" / "go.mod").write_text("module minildr.test/hello\n\ngo 1.21\n")
    (folder / "hello" / "main.go").write_text(
        'package main\n\nimport "minildr.test/hello/words"\n\n'
        "func main() { println(words.Text) }\n")
    _say(folder, text)
    return folder


def _say(folder: Path, text: str) -> None:
    (folder / "hello" / "words" / "words.go").write_text(
        f'package words\n\nconst Text = "{text}"\n')


@pytest.fixture
def links(tmp_path) -> golinks.LinkCache:
    return golinks.LinkCache(tmp_path / "links")


def _workspace(tmp_path: Path, name: str, links: golinks.LinkCache, text: str) -> golang.Workspace:
    sources = _sources(tmp_path / f"{name}-src", text)
    return golang.Workspace(tmp_path / name, sources=sources, shown_as="WORK", links=links)


def test_the_same_build_in_another_workspace_is_not_linked_again(tmp_path, links):
    first = _workspace(tmp_path, "a", links, "first")
    assert _linked(built := first.build(".", "hello", module="hello", flags=FLAGS)), built
    again = _workspace(tmp_path, "b", links, "first")
    result = again.build(".", "hello", module="hello", flags=FLAGS)
    assert result.ok and not _linked(result), result        # Go found it up to date
    assert (again.out / "hello").read_bytes() == (first.out / "hello").read_bytes()
    assert again.run("hello").output == "first\n"


def test_an_offered_link_of_other_sources_is_linked_again_never_served(tmp_path, links):
    """The hint (output name, package folder) is the same; a package it imports changed."""
    first = _workspace(tmp_path, "a", links, "first")
    assert first.build(".", "hello", module="hello", flags=FLAGS).ok
    changed = _workspace(tmp_path, "b", links, "second")
    result = changed.build(".", "hello", module="hello", flags=FLAGS)
    assert result.ok and _linked(result), result             # Go refused the offered file
    assert changed.run("hello").output == "second\n"
    # The new link replaced the old one: a third workspace with "second" is not linked.
    third = _workspace(tmp_path, "c", links, "second")
    assert not _linked(third.build(".", "hello", module="hello", flags=FLAGS))
    assert len([p for p in links.folder.iterdir() if p.name != "trim.txt"]) == 1


def test_a_failed_build_leaves_no_output_even_when_one_was_offered(tmp_path, links):
    first = _workspace(tmp_path, "a", links, "first")
    assert first.build(".", "hello", module="hello", flags=FLAGS).ok
    broken = _workspace(tmp_path, "b", links, 'first" + undefined + "')
    result = broken.build(".", "hello", module="hello", flags=FLAGS)
    assert not result.ok and "undefined" in result.output
    assert not (broken.out / "hello").exists()
    assert broken.run("hello").returncode == 127            # nothing to run, as without links


def test_an_existing_output_is_left_to_go(tmp_path, links):
    ws = _workspace(tmp_path, "a", links, "first")
    assert ws.build(".", "hello", module="hello", flags=FLAGS).ok
    _say(ws.src, "second")
    result = ws.build(".", "hello", module="hello", flags=FLAGS)
    assert _linked(result) and ws.run("hello").output == "second\n"


def test_a_damaged_link_is_not_offered_and_is_removed(tmp_path, links):
    output = tmp_path / "out.bin"
    output.write_bytes(b"\x7fELF" + bytes(1000))
    links.keep("k", output)
    (entry,) = [p for p in links.folder.iterdir() if p.name != "trim.txt"]
    assert entry.name == f"k.{hashlib.sha256(output.read_bytes()).hexdigest()}"
    entry.write_bytes(b"\x7fELF" + bytes(999) + b"\1")      # one byte changed on disk
    target = tmp_path / "target"
    assert not links.offer("k", target) and not target.exists()
    assert not entry.exists()


def test_a_kept_host_is_offered_executable(tmp_path, links):
    output = tmp_path / "host"
    output.write_bytes(b"#!/bin/sh\necho hi\n")
    output.chmod(0o755)
    links.keep("k", output)
    assert links.offer("k", tmp_path / "again")
    assert os.access(tmp_path / "again", os.X_OK)
    assert not links.offer("k", tmp_path / "again")          # an existing file is left alone


def test_only_the_tests_have_a_link_cache(tmp_path, monkeypatch):
    """tests/conftest.py sets it; a learner's kernel (learner_env) and Workspace never have it."""
    assert os.environ.get(golinks.ENV)
    assert golinks.ENV not in learner_env(os.environ)
    monkeypatch.delenv(golinks.ENV)
    ws = golang.Workspace(tmp_path / "ws", sources=_sources(tmp_path / "src", "x"))
    assert ws.links is None


def test_links_unused_for_five_days_are_removed_once_a_day(tmp_path, links):
    """As Go trims its own build cache; a link offered meanwhile counts as used."""
    output = tmp_path / "out.bin"
    for key in ("old", "used", "new"):
        output.write_bytes(key.encode())
        links.keep(key, output)
    old, used, new = (links._entries(k)[0] for k in ("old", "used", "new"))
    six_days_ago = time.time() - 6 * 24 * 3600
    for entry in (old, used):
        os.utime(entry, (six_days_ago, six_days_ago))
    assert links.offer("used", tmp_path / "taken")
    links.trim()                                  # keep() trimmed minutes ago: not yet again
    assert old.exists()
    links.trim(now=time.time() + 3600 * 25)       # a day later
    assert not old.exists() and used.exists() and new.exists()


def _keep_and_offer(folder: Path, me: int, rounds: int) -> None:
    links = golinks.LinkCache(folder)
    contents = [bytes([n]) * (256 * 1024 + n) for n in range(3)]
    out, target = folder.parent / f"out{me}", folder.parent / f"target{me}"
    for i in range(rounds):
        out.write_bytes(contents[(me + i) % 3])
        links.keep("same", out)
        target.unlink(missing_ok=True)
        if links.offer("same", target):
            assert target.read_bytes() in contents, "half a file"


@pytest.mark.fuzz
def test_keeping_and_offering_at_once_never_gives_half_a_file(tmp_path):
    """Three threads keep different outputs under one key and take them back (make test:
    15 rounds each; make fuzz: 300), as pytest-xdist's workers building one output at once
    (a rename is atomic between threads as between processes)."""
    folder, rounds = tmp_path / "links", stress(15, 300)
    with ThreadPoolExecutor(3) as pool:
        for done in [pool.submit(_keep_and_offer, folder, n, rounds) for n in range(3)]:
            done.result()
    assert not [p for p in folder.iterdir() if p.name.startswith(".")]   # no staged file left
