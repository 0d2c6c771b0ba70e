"""Child of test_native_differential.py: one loader's verdict on each file of a folder.

    python native_verdict_child.py glibc|native FOLDER

Each file is loaded in its own forked process (so a crash kills only that
one) and closed again: by glibc's dlopen (through ctypes) or by
minildr.native.load. Prints one JSON object: file name -> verdict, one of
"loaded", "refused: <message>", "error: <exception>" (the native loader
raised something other than a PluginError), "crash: <signal>", "hung".
"""
from __future__ import annotations

import ctypes
import json
import os
import signal
import sys
import traceback

import minildr.native
from minildr.errors import PluginError


def load(mode: str, path: str) -> int:
    """In the forked child: 0 loaded, 1 refused (message on stdout), 2 unexpected error."""
    signal.alarm(20)
    try:
        if mode == "glibc":
            handle = ctypes.CDLL(path, mode=os.RTLD_NOW | os.RTLD_LOCAL)
            ctypes.CDLL(None).dlclose(ctypes.c_void_p(handle._handle))
        else:
            minildr.native.load(path).close()
        return 0
    except (OSError if mode == "glibc" else PluginError) as exc:
        print(str(exc).replace(path, "FILE")[:300], flush=True)
        return 1
    except BaseException:                                 # noqa: BLE001 - the verdict is the point
        print(traceback.format_exc(limit=3).replace("\n", " | ")[:500], flush=True)
        return 2


def verdict(mode: str, path: str) -> str:
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read)
        os.dup2(write, 1)
        os._exit(load(mode, path))
    os.close(write)
    with os.fdopen(read) as f:
        said = f.read().strip()
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        return "hung" if sig == signal.SIGALRM else f"crash: {signal.Signals(sig).name}"
    return {0: "loaded", 1: f"refused: {said}"}.get(os.WEXITSTATUS(status), f"error: {said}")


def main() -> None:
    mode, folder = sys.argv[1], sys.argv[2]
    names = sorted(os.listdir(folder))
    print(json.dumps({name: verdict(mode, os.path.join(folder, name)) for name in names}))


if __name__ == "__main__":
    main()
