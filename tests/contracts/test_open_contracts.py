"""Contracts through build() and open(), and the order open() checks things in."""
from __future__ import annotations

import pytest

import minildr

from helpers import write_plugin
from platforms import requires_proc

COMMAND_V1 = """
/* command.h: what the host calls a command. */
#ifndef COMMAND_H
#define COMMAND_H
typedef struct command { const char *(*name)(void); int (*run)(const char *line); } command_t;
#endif
"""
SOURCE = """
static const char *my_name(void) { return "shout"; }
static int my_run(const char *line) { return line[0]; }
const command_t shout = { my_name, my_run };   /* uses the contract's type, no #include */
"""
HEADER = "extern const command_t shout;\n"


def contract(text=COMMAND_V1, version="1.0"):
    return minildr.Contract.from_header(text, name="command", version=version)


@pytest.fixture
def shout(tmp_path):
    return write_plugin(tmp_path, "shout", SOURCE, HEADER, contracts=[contract()], once=True)


def test_build_compiles_the_contract_in_and_records_its_hash(shout):
    manifest = minildr.read_manifest(shout)
    ref = manifest.contracts["command"]
    assert (ref.version, ref.sha256) == ("1.0", contract().sha256)
    assert manifest.exports["shout"].ctype == "const command_t"
    assert "command_t" in manifest.types


def test_same_contract_opens(shout):
    with minildr.open(shout, contracts=[contract()]) as plugin:
        assert plugin.lookup("shout").kind == "data"


def test_reformatted_contract_is_the_same_contract(shout):
    relaxed = COMMAND_V1.replace("/* command.h: what the host calls a command. */", "// v1") \
                        .replace("; int", ";\n    int")
    assert relaxed != COMMAND_V1
    with minildr.open(shout, contracts=[contract(relaxed)]):
        pass


def test_changed_contract_is_a_dependency_mismatch(shout):
    changed = contract(COMMAND_V1.replace("int (*run)", "long (*run)"), version="1.1")
    with pytest.raises(minildr.DependencyMismatch) as err:
        minildr.open(shout, contracts=[changed])
    message = str(err.value)
    assert "different version of contract command" in message
    assert "command 1.0" in message and "command 1.1" in message
    assert contract().sha256[:16] in message and changed.sha256[:16] in message
    assert str(shout) in message


def test_contract_the_plugin_does_not_name_is_ignored(shout):
    other = minildr.Contract.from_header("int unrelated;", name="linter")
    with minildr.open(shout, contracts=[other]):
        pass


def test_checks_run_in_order_versions_before_contracts(tmp_path, shout, monkeypatch):
    """A plugin wrong in two ways reports the earlier check (ABI before contracts)."""
    monkeypatch.setattr(minildr.checks, "ABI_VERSION", minildr.ABI_VERSION + 1)
    changed = contract(COMMAND_V1.replace("int (*run)", "long (*run)"))
    with pytest.raises(minildr.VersionMismatch):
        minildr.open(shout, contracts=[changed])


@requires_proc
def test_refused_plugin_is_never_loaded(shout):
    changed = contract(COMMAND_V1.replace("int (*run)", "long (*run)"))
    with pytest.raises(minildr.DependencyMismatch):
        minildr.open(shout, contracts=[changed])
    with open("/proc/self/maps") as maps:
        assert "minildr:shout" not in maps.read()
