"""Contract evolution: append-only vtables across minor versions, in both directions;
other majors, relabelled and reordered contracts refused before loading."""
from __future__ import annotations

import pytest

import minildr
from minildr.contracts import layout

from helpers import EXAMPLES
from platforms import requires_isolation, requires_proc

V1_1_TEXT = (EXAMPLES / "command" / "command.h").read_text()
HELP = "    /* --- 1.1 --- one line of help: the plugin's constant string. */\n" \
       "    const char *(*help)(void);\n"
assert HELP in V1_1_TEXT
V1_0_TEXT = V1_1_TEXT.replace(HELP, "")
V1_2_TEXT = V1_1_TEXT.replace(HELP, HELP + "    /* --- 1.2 --- */\n"
                              "    minildr_status (*complete)(const char *prefix, char **out,"
                              " minildr_error *err);\n")
V2_0_TEXT = V1_1_TEXT.replace("minildr_status (*run)(const char *line,",
                              "minildr_status (*run)(const char *line, int flags,")


def command(text: str, version: str) -> minildr.Contract:
    return minildr.Contract.from_header(text, name="command", version=version)


V1_0, V1_1, V1_2, V2_0 = (command(V1_0_TEXT, "1.0"), command(V1_1_TEXT, "1.1"),
                          command(V1_2_TEXT, "1.2"), command(V2_0_TEXT, "2.0"))

SOURCE = r"""
#include <stdlib.h>
#include <string.h>
static void release(void *memory) { free(memory); }
static const char *name(void) { return PLUGIN; }
#ifdef FLAGS
static minildr_status run(const char *line, int flags, char **out, minildr_error *err)
#else
static minildr_status run(const char *line, char **out, minildr_error *err)
#endif
{ *out = strdup(line); return *out ? MINILDR_OK : MINILDR_ERROR; }
#ifdef HELP
static const char *help(void) { return "help of " PLUGIN; }
#endif
#ifdef COMPLETE
static minildr_status complete(const char *prefix, char **out, minildr_error *err)
{ *out = strdup(prefix); return MINILDR_OK; }
#endif
const command_t cmd = {
    .struct_size = sizeof(command_t), .release = release, .name = name, .run = run,
#ifdef HELP
    .help = help,
#endif
#ifdef COMPLETE
    .complete = complete,
#endif
};
"""


def build(tmp, contract: minildr.Contract, *defines: str):
    src = tmp / f"src-{contract.version}"
    src.mkdir(exist_ok=True)
    (src / "cmd.c").write_text(SOURCE)
    (src / "cmd.h").write_text("extern const command_t cmd;\n")
    plugin = f"cmd{contract.version.replace('.', '')}"
    return minildr.build([src / "cmd.c"], name=plugin, exports=src / "cmd.h",
                         contracts=[contract], out_dir=tmp / "out",
                         cflags=[f'-DPLUGIN="{plugin}"', *(f"-D{d}" for d in defines)])


@pytest.fixture(scope="module")
def plugins(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("evolution")
    return {"1.0": build(tmp, V1_0), "1.1": build(tmp, V1_1, "HELP"),
            "1.2": build(tmp, V1_2, "HELP", "COMPLETE"), "2.0": build(tmp, V2_0, "HELP", "FLAGS")}


@pytest.fixture(params=[False, pytest.param(True, marks=requires_isolation)], ids=["in-process", "isolated"])
def isolate(request):
    """Evolution through a worker process (minildr.isolation.contracts) must look the same."""
    return request.param


def test_newer_host_loads_older_plugin_and_its_missing_method_is_absent(plugins, isolate):
    with minildr.open(plugins["1.0"], contracts=[V1_1], isolate=isolate) as plugin:
        cmd = plugin.lookup("cmd", V1_1)
        assert cmd.run("a line") == "a line" and cmd.name() == "cmd10"
        assert cmd.has("run") and not cmd.has("help")
        assert cmd.methods == ("name", "run", "help")
        with pytest.raises(minildr.NotImplementedByPlugin) as err:
            cmd.help()
        assert "does not implement help() of contract command 1.1" in str(err.value)
        assert "older version" in str(err.value) and err.value.plugin == "cmd10"
        assert "help (absent)" in repr(cmd)


def test_older_host_loads_newer_plugin_and_sees_its_own_methods(plugins, isolate):
    with minildr.open(plugins["1.1"], contracts=[V1_0], isolate=isolate) as plugin:
        cmd = plugin.lookup("cmd", V1_0)
        assert cmd.methods == ("name", "run") and not hasattr(cmd, "help")
        assert cmd.run("x") == "x"


def test_two_minors_apart_both_ways(plugins, isolate):
    with minildr.open(plugins["1.2"], contracts=[V1_1], isolate=isolate) as plugin:
        cmd = plugin.lookup("cmd", V1_1)
        assert cmd.help() == "help of cmd12" and not hasattr(cmd, "complete")
    with minildr.open(plugins["1.0"], contracts=[V1_2], isolate=isolate) as plugin:
        cmd = plugin.lookup("cmd", V1_2)
        assert [m for m in cmd.methods if cmd.has(m)] == ["name", "run"]
        with pytest.raises(minildr.NotImplementedByPlugin):
            cmd.complete("pre")


def test_same_version_both_sides_has_every_method(plugins, isolate):
    with minildr.open(plugins["1.2"], contracts=[V1_2], isolate=isolate) as plugin:
        cmd = plugin.lookup("cmd", V1_2)
        assert all(cmd.has(m) for m in cmd.methods) and cmd.complete("ab") == "ab"


@requires_proc
def test_newer_major_is_refused_before_loading(plugins):
    with pytest.raises(minildr.DependencyMismatch) as err:
        minildr.open(plugins["2.0"], contracts=[V1_1])
    assert "newer major version (2.0)" in str(err.value)
    with open("/proc/self/maps") as maps:
        assert "minildr:cmd20" not in maps.read()


def test_older_major_is_refused(plugins):
    with pytest.raises(minildr.DependencyMismatch, match=r"older major version \(1.1\)"):
        minildr.open(plugins["1.1"], contracts=[V2_0])


def test_same_label_other_content_is_refused(plugins):
    relabelled = command(V1_2_TEXT, "1.1")
    with pytest.raises(minildr.DependencyMismatch, match="same version label, different content"):
        minildr.open(plugins["1.1"], contracts=[relabelled])


def test_a_minor_version_that_changes_a_field_is_refused_naming_it(plugins):
    changed = command(V1_1_TEXT.replace("const char *(*help)(void);", "int (*help)(void);"), "1.3")
    with pytest.raises(minildr.DependencyMismatch) as err:
        minildr.open(plugins["1.2"], contracts=[changed])
    message = str(err.value)
    assert "not an append-only change" in message
    assert "field 5 of command_t is 'int (*help)(void)' in the host's contract but " \
           "'const char *(*help)(void)' in the plugin" in message


def test_a_minor_version_that_reorders_fields_is_refused(plugins):
    swapped = V1_1_TEXT.replace("    const char *(*name)(void);\n", "").replace(
        HELP, HELP + "    const char *(*name)(void);\n")
    with pytest.raises(minildr.DependencyMismatch, match="field 3 of command_t"):
        minildr.open(plugins["1.1"], contracts=[command(swapped, "1.5")])


def test_versions_without_major_minor_must_be_identical(plugins):
    with pytest.raises(minildr.DependencyMismatch, match="not MAJOR.MINOR"):
        minildr.open(plugins["1.1"], contracts=[command(V1_2_TEXT, "latest")])


# -- the rule itself, on declarations ---------------------------------------
def decls(text: str) -> layout.Declarations:
    return layout.Declarations(text)


def test_a_struct_without_a_size_field_cannot_grow():
    old = decls("typedef struct v { int (*a)(void); } v_t;")
    new = decls("typedef struct v { int (*a)(void); int (*b)(void); } v_t;")
    problem = layout.compare(new, old)
    assert "cannot grow" in problem and "int (*b)(void)" in problem


def test_records_must_not_change_at_all():
    old = decls("typedef struct r { int line; char message[100]; } r_t;")
    new = decls("typedef struct r { int line; char message[160]; } r_t;")
    assert "char message[160]" in layout.compare(new, old)
    grown = decls("typedef struct r { int line; char message[100]; int extra; } r_t;")
    assert "cannot grow" in layout.compare(grown, old)


def test_enums_must_not_change():
    old = decls("typedef enum e { A = 0, B = 1 } e_t;")
    new = decls("typedef enum e { A = 0, B = 2 } e_t;")
    assert "enum e" in layout.compare(new, old)


def test_vtables_may_grow_at_the_end_only():
    old = decls("typedef struct v { size_t struct_size; int (*a)(void); } v_t;")
    new = decls("typedef struct v { size_t struct_size; int (*a)(void); int (*b)(int); } v_t;")
    assert layout.compare(new, old) is None and layout.compare(old, new) is None
    inserted = decls("typedef struct v { size_t struct_size; int (*b)(int); int (*a)(void); } v_t;")
    assert "field 2" in layout.compare(inserted, old)


def test_a_size_field_on_one_side_only_is_a_difference():
    sized = decls("typedef struct v { size_t struct_size; int (*a)(void); } v_t;")
    empty = decls("typedef struct v { int (*a)(void); } v_t;")
    assert "struct_size' on one side only (the host's)" in layout.compare(sized, empty)
    assert "(the plugin's)" in layout.compare(empty, sized)


def test_lookup_checks_the_version_when_open_was_not_given_the_contract(plugins, isolate):
    with minildr.open(plugins["2.0"], isolate=isolate) as plugin:          # no contracts=: open cannot tell
        with pytest.raises(minildr.DependencyMismatch, match="newer major version"):
            plugin.lookup("cmd", V1_1)
    with minildr.open(plugins["1.0"], isolate=isolate) as plugin:
        assert not plugin.lookup("cmd", V1_1).has("help")
