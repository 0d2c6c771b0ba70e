"""plugin_path: a base that is a folder names that folder, even before it exists.

Found while writing notebook 06 (then 05): `plugin_path("greet", app / "plugins")` gave
`app/greet.so` when the plugins folder had not been created yet, so the
PluginNotFound that followed named a file in the wrong folder.
"""
from __future__ import annotations

import pytest

import minildr


def test_a_missing_folder_is_still_the_folder(tmp_path):
    folder = tmp_path / "app" / "plugins"          # not created
    assert minildr.plugin_path("greet", folder) == folder.resolve() / f"greet{minildr.SUFFIX}"
    with pytest.raises(minildr.PluginNotFound) as err:
        minildr.open(minildr.plugin_path("greet", folder))
    assert str(folder / f"greet{minildr.SUFFIX}") in str(err.value)


def test_an_existing_file_means_its_folder(tmp_path):
    host = tmp_path / "host.py"
    host.write_text("# the host\n")
    assert minildr.plugin_path("greet", host) == tmp_path.resolve() / f"greet{minildr.SUFFIX}"


def test_an_existing_folder_is_the_folder(tmp_path):
    assert minildr.plugin_path(f"greet{minildr.SUFFIX}", tmp_path) == \
        tmp_path.resolve() / f"greet{minildr.SUFFIX}"
