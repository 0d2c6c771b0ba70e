"""The system loader on Windows (LoadLibraryExW, minildr/system.py): what the Linux suite cannot reach.

Runs on Windows: the fork CI's windows-latest job, and from Linux under wine
with tools/windows-under-wine.sh (where these were first run).
"""
from __future__ import annotations

import sys

import pytest

import minildr
from minildr import system

from helpers import write_plugin

pytestmark = pytest.mark.skipif(sys.platform != "win32",
                                reason="Windows only: LoadLibraryExW, DllMain and Windows' error messages")

# DllMain is the DLL's constructor; returning FALSE for DLL_PROCESS_ATTACH (1)
# makes LoadLibrary fail with ERROR_DLL_INIT_FAILED (1114).
REFUSING_DLLMAIN = ("int __stdcall DllMain(void *module, unsigned long reason, void *reserved)\n"
                    "{ return reason != 1; }\n"
                    "int answer(void) { return 42; }\n")


def test_a_dll_that_refuses_to_load_is_a_load_error_with_windows_words(tmp_path):
    path = write_plugin(tmp_path, "refuses", REFUSING_DLLMAIN, "int answer(void);\n")
    with pytest.raises(minildr.LoadError) as err:
        minildr.open(path)
    message = str(err.value)
    assert message.startswith(str(path)) and "the system loader refused it" in message
    assert "(Windows error 1114)" in message
    assert not message.split("refused it: ")[1].startswith("(")     # Windows' own words first


def test_a_refused_dll_leaves_the_host_whole(tmp_path, built):
    path = write_plugin(tmp_path, "refuses", REFUSING_DLLMAIN, "int answer(void);\n")
    with pytest.raises(minildr.LoadError):
        minildr.open(path)
    with minildr.open(built["greet"]) as plugin:
        assert plugin.name == "greet"


def test_the_loader_knows_whether_a_library_is_still_mapped(built):
    plugin = minildr.open(built["greet"])
    load_path = plugin._library.load_path
    assert system._still_loaded(load_path)
    plugin.close()
    assert not system._still_loaded(load_path)
