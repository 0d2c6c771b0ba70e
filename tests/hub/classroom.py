"""A class on a real JupyterHub, on loopback: the pieces tests/hub and benchmarks/ share.

What a teacher's hub does, with nothing faked between the student and the
kernel:

- `Classroom` creates real OS users (non-root uids, removed afterwards),
  serves this repository from `git daemon`, and starts JupyterHub with its
  proxy (configurable-http-proxy from npm). The authenticator has a password
  per student and is asked through the hub's login form; LocalProcessSpawner
  starts each student's server AS that student's uid, from the shared,
  read-only environment `make hub-env` builds (HUB_VENV).
- `Student` logs in through the form, follows the nbgitpuller link (doing
  what the link page's JavaScript does: the `git-pull/api` event stream),
  and runs a notebook the way JupyterLab's Run All does: a session (so the
  server starts a kernel in the notebook's folder), one `execute_request`
  per code cell over the kernel's websocket, through the hub's proxy.
- `compare_outputs` checks what the kernel printed against the notebook's
  saved outputs, sanitized with the course's own tests/sanitize.cfg.

Everything it starts is recorded, so a test can check that it is all gone.
"""
from __future__ import annotations

import configparser
import html.parser
import json
import os
import pwd
import re
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import textwrap
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional
from urllib.parse import quote, unquote, urlencode

import psutil
import requests
import websocket

ROOT = Path(__file__).resolve().parents[2]
HUB_VENV = Path(os.environ.get("HUB_VENV", "/opt/minildr-venv"))
CHP = Path(os.environ.get(
    "CHP", HUB_VENV / "share/configurable-http-proxy/node_modules/.bin/configurable-http-proxy"))
SANITIZE = ROOT / "tests" / "sanitize.cfg"
LOGS = ROOT / "build" / "hub"
TARGET = "minildr"                 # the folder nbgitpuller clones the course into
START_TIMEOUT = 120                # seconds for a student's server to come up
CELL_TIMEOUT = 180                 # seconds for one cell


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate, timeout: float, what: str, interval: float = 0.3):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def run(*command: str, attempts: int = 1, **kwargs) -> subprocess.CompletedProcess:
    """Run a command; fail with what it printed. `attempts` for useradd/userdel, whose
    lock on /etc/passwd another program may hold for a moment (exit status 1)."""
    for attempt in range(attempts):
        done = subprocess.run(command, capture_output=True, text=True, **kwargs)
        if done.returncode == 0:
            return done
        if attempt + 1 < attempts:
            time.sleep(0.5)
    raise RuntimeError(f"{' '.join(command)}: exit status {done.returncode}: "
                       f"{(done.stderr or done.stdout).strip()}")


# ---------------------------------------------------------------------------
# the hub
# ---------------------------------------------------------------------------
HUB_CONFIG = '''\
# Written by tests/hub/classroom.py: a class of {count} on loopback.
import hmac
from jupyterhub.auth import Authenticator
from traitlets import Dict


class ClassAuthenticator(Authenticator):
    """One password per student, checked on the hub's own login form (no PAM)."""
    passwords = Dict(config=True)

    async def authenticate(self, handler, data):
        expected = self.passwords.get(data["username"], "")
        if expected and hmac.compare_digest(expected, data["password"]):
            return data["username"]
        return None


c.JupyterHub.bind_url = "http://127.0.0.1:{port}"
c.JupyterHub.hub_ip = "127.0.0.1"
c.JupyterHub.hub_port = {hub_port}
c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:{proxy_api_port}"
c.ConfigurableHTTPProxy.command = [{chp!r}]
c.ConfigurableHTTPProxy.should_start = True
c.JupyterHub.authenticator_class = ClassAuthenticator
c.ClassAuthenticator.passwords = {passwords!r}
c.Authenticator.allowed_users = set({users!r})
# Each student's server runs AS that student (a real uid), from the shared,
# read-only environment: its Python, its minildr (installed non-editable).
c.JupyterHub.spawner_class = "jupyterhub.spawner.LocalProcessSpawner"
c.Spawner.cmd = [{singleuser!r}]
c.Spawner.ip = "127.0.0.1"
c.Spawner.default_url = "/lab"
# git refuses to read a repository another uid owns (file:// or a path) unless
# the system config names it safe: what an image's `git config --system --add
# safe.directory ...` does, here in a config file of the test's own.
c.Spawner.environment = {{"PATH": {path!r}, "LANG": "C.UTF-8",
                         "GIT_CONFIG_SYSTEM": "{folder}/gitconfig"}}
c.Spawner.start_timeout = {start_timeout}
c.Spawner.http_timeout = {start_timeout}
c.JupyterHub.cleanup_servers = True
c.JupyterHub.db_url = "sqlite:///{folder}/jupyterhub.sqlite"
c.JupyterHub.cookie_secret_file = "{folder}/jupyterhub_cookie_secret"
c.JupyterHub.pid_file = "{folder}/jupyterhub.pid"
'''


@dataclass
class Classroom:
    """Users, a git server and a hub; `start()` brings them up, `stop()` takes them down."""
    count: int = 3
    folder: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="minildr-hub-")))
    users: Dict[str, str] = field(default_factory=dict)       # name -> password
    processes: List[psutil.Process] = field(default_factory=list)
    timings: Dict[str, float] = field(default_factory=dict)
    commit: str = ""

    def __post_init__(self) -> None:
        os.chmod(self.folder, 0o755)       # the students' homes live below
        self.hub: Optional[psutil.Process] = None
        self.port, self.hub_port, self.proxy_api_port, self.git_port = (
            free_port(), free_port(), free_port(), free_port())
        tag = f"{os.getpid() % 100000:05d}"
        self.names = [f"mh{tag}s{i + 1}" for i in range(self.count)]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def repo_url(self, form: str = "git") -> str:
        """This repository as nbgitpuller's `repo=`, in one of the forms a teacher may give."""
        bare = self.folder / "git" / "minildr.git"
        return {"git": f"git://127.0.0.1:{self.git_port}/minildr.git",
                "file": f"file://{bare}",
                "path": str(bare)}[form]

    # -- bringing it up ------------------------------------------------------
    def start(self) -> None:
        began = time.monotonic()
        self._create_users()
        self._serve_repository()
        self._start_hub()
        self.timings["hub up (users, git daemon, hub, proxy)"] = time.monotonic() - began

    def _create_users(self) -> None:
        homes = self.folder / "home"
        homes.mkdir(mode=0o755)
        for name in self.names:
            run("useradd", "--create-home", "--home-dir", str(homes / name), "--user-group",
                "--shell", "/bin/bash", name, attempts=20)
            self.users[name] = secrets.token_urlsafe(12)

    def _serve_repository(self) -> None:
        """A bare copy of this checkout (with uncommitted changes) behind `git daemon`."""
        bare = self.folder / "git" / "minildr.git"
        run("git", "init", "--quiet", "--bare", str(bare))
        snapshot = run("git", "-C", str(ROOT), "stash", "create").stdout.strip()
        self.commit = snapshot or run("git", "-C", str(ROOT), "rev-parse", "HEAD").stdout.strip()
        run("git", "-C", str(ROOT), "push", "--quiet", str(bare), f"{self.commit}:refs/heads/main")
        run("git", "-C", str(bare), "symbolic-ref", "HEAD", "refs/heads/main")
        daemon = subprocess.Popen(
            ["git", "daemon", "--reuseaddr", "--listen=127.0.0.1", f"--port={self.git_port}",
             f"--base-path={bare.parent}", "--export-all", "--informative-errors", str(bare.parent)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        self.processes.append(psutil.Process(daemon.pid))
        wait_for(lambda: subprocess.run(["git", "ls-remote", self.repo_url("git")],
                                        capture_output=True).returncode == 0,
                 20, "git daemon")

    def _start_hub(self) -> None:
        hub = self.folder / "hub"
        hub.mkdir()
        config = hub / "jupyterhub_config.py"
        (hub / "gitconfig").write_text(
            f"[safe]\n\tdirectory = {self.folder / 'git' / 'minildr.git'}\n")
        config.write_text(HUB_CONFIG.format(
            count=self.count, port=self.port, hub_port=self.hub_port,
            proxy_api_port=self.proxy_api_port, chp=str(CHP), passwords=self.users,
            users=sorted(self.users), singleuser=str(HUB_VENV / "bin" / "jupyterhub-singleuser"),
            path=f"{HUB_VENV / 'bin'}:/usr/local/bin:/usr/bin:/bin",
            start_timeout=START_TIMEOUT, folder=hub))
        log = open(hub / "jupyterhub.log", "w")
        process = subprocess.Popen([str(HUB_VENV / "bin" / "jupyterhub"), "-f", str(config)],
                                   cwd=hub, stdout=log, stderr=subprocess.STDOUT,
                                   start_new_session=True)
        self.hub = psutil.Process(process.pid)
        self.processes.append(self.hub)

        def up() -> bool:
            if process.poll() is not None:
                raise RuntimeError(f"jupyterhub exited ({process.returncode}):\n{self.hub_log()}")
            try:
                return requests.get(f"{self.url}/hub/api/", timeout=2).status_code == 200
            except requests.ConnectionError:
                return False
        wait_for(up, 60, "JupyterHub and its proxy")
        self.record_children()

    def hub_log(self) -> str:
        path = self.folder / "hub" / "jupyterhub.log"
        return path.read_text()[-6000:] if path.exists() else ""

    def record_children(self) -> None:
        """Remember every process the hub has started so far (proxy, servers, kernels)."""
        try:
            children = self.hub.children(recursive=True) if self.hub else []
        except psutil.NoSuchProcess:
            return
        known = {(p.pid, p.create_time()) for p in self.processes}
        for child in children:
            try:
                if (child.pid, child.create_time()) not in known:
                    self.processes.append(child)
            except psutil.NoSuchProcess:
                pass

    def student_processes(self) -> List[psutil.Process]:
        uids = {pwd.getpwnam(name).pw_uid for name in self.names if _user_exists(name)}
        found = []
        for process in psutil.process_iter(["uids"]):
            try:
                if process.info["uids"] and process.info["uids"].real in uids:
                    found.append(process)
            except psutil.NoSuchProcess:
                pass
        return found

    # -- taking it down ----------------------------------------------------
    def stop(self) -> List[str]:
        """Stop the hub (it stops the servers and its proxy), the git daemon, remove the users.

        Returns what was still running afterwards (an empty list when all is gone)."""
        self.record_children()
        if self.hub is not None:
            _terminate(self.hub, 30)
        for process in self.processes:
            _terminate(process, 10)
        leftovers = [f"{p.pid} {_describe(p)}" for p in self.processes if _alive(p)]
        leftovers += [f"{p.pid} {_describe(p)} (a student's)" for p in self.student_processes()]
        for process in self.student_processes():      # never leave them behind, even on failure
            _terminate(process, 5)
        for name in self.names:
            if _user_exists(name):
                try:
                    run("userdel", "--remove", name, attempts=20)
                except RuntimeError as exc:
                    leftovers.append(f"user {name} not removed: {exc}")
        log = self.folder / "hub" / "jupyterhub.log"
        if log.exists():                   # kept for whoever reads a failure (a CI artifact)
            LOGS.mkdir(parents=True, exist_ok=True)
            shutil.copy(log, LOGS / "jupyterhub.log")
        shutil.rmtree(self.folder, ignore_errors=True)
        return leftovers


def _user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
        return True
    except KeyError:
        return False


def _alive(process: psutil.Process) -> bool:
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _describe(process: psutil.Process) -> str:
    try:
        return " ".join(process.cmdline())[:120]
    except psutil.Error:
        return "?"


def _terminate(process: psutil.Process, timeout: float) -> None:
    if not _alive(process):
        return
    try:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout)
    except psutil.TimeoutExpired:
        process.kill()
        process.wait(5)
    except psutil.NoSuchProcess:
        pass


# ---------------------------------------------------------------------------
# a student
# ---------------------------------------------------------------------------
class _BodyData(html.parser.HTMLParser):
    """The data-* attributes of a page's <body> (how nbgitpuller's page passes its parameters)."""

    def __init__(self) -> None:
        super().__init__()
        self.data: Dict[str, str] = {}

    def handle_starttag(self, tag, attrs):
        if tag == "body":
            self.data = {k[5:]: unquote(v or "") for k, v in attrs if k.startswith("data-")}


class Student:
    """One student's browser: a cookie jar, the hub's login form, then their own server."""

    def __init__(self, classroom: Classroom, name: str) -> None:
        self.classroom, self.name = classroom, name
        self.http = requests.Session()
        self.server = f"{classroom.url}/user/{name}"
        self.token = ""
        self.timings: Dict[str, float] = {}

    def login(self, password: Optional[str] = None) -> requests.Response:
        """GET the login form, POST it with its _xsrf; the hub then starts the server."""
        page = self.http.get(f"{self.classroom.url}/hub/login", timeout=30)
        xsrf = re.search(r'name="_xsrf" value="([^"]+)"', page.text)
        form = {"username": self.name,
                "password": self.classroom.users[self.name] if password is None else password}
        if xsrf:
            form["_xsrf"] = xsrf.group(1)
        return self.http.post(f"{self.classroom.url}/hub/login?next=", data=form, timeout=60)

    def wait_for_server(self) -> None:
        """Until the server's page opens through the proxy (and its OAuth handshake is done).

        A page, as a browser would: cookie-authenticated API calls need an
        _xsrf token, pages do not; until the server is up, the hub answers
        with its spawn-pending page instead."""
        began = time.monotonic()

        def ready() -> bool:
            answer = self.http.get(f"{self.server}/lab", timeout=30)
            return answer.status_code == 200 and answer.url.startswith(self.server)
        wait_for(ready, START_TIMEOUT, f"{self.name}'s server", interval=1)
        self.timings["server ready after login"] = time.monotonic() - began
        # A token of the student's own, asked for with the student's own hub cookie:
        # the kernel API calls below then authenticate as the student.
        xsrf = self.http.cookies.get("_xsrf", path="/hub/")
        answer = self.http.post(f"{self.classroom.url}/hub/api/users/{self.name}/tokens",
                                json={"note": "classroom test", "expires_in": 3600},
                                headers={"X-XSRFToken": xsrf or ""}, timeout=30)
        answer.raise_for_status()
        self.token = answer.json()["token"]

    def pull_link(self, repo: str) -> str:
        """The README's link: nbgitpuller with targetpath, opening notebook 00."""
        query = urlencode({"repo": repo, "branch": "main", "targetpath": TARGET,
                           "urlpath": f"lab/tree/{TARGET}/notebooks/00-the-plugin-problem.ipynb"},
                          quote_via=quote)
        return f"{self.classroom.url}/hub/user-redirect/git-pull?{query}"

    def follow_pull_link(self, repo: str) -> Dict[str, object]:
        """What a browser does with the link: the page, its event stream, the redirect."""
        began = time.monotonic()
        page = self.http.get(self.pull_link(repo), timeout=60)
        page.raise_for_status()
        body = _BodyData()
        body.feed(page.text)
        data = body.data
        params = {"_xsrf": data["xsrf"], "repo": data["repo"], "targetpath": data["targetpath"]}
        for key in ("depth", "branch", "backup"):
            if key in data:
                params[key] = data[key]
        phases, output = [], []
        with self.http.get(self.classroom.url + data["base-url"] + "git-pull/api",
                           params=params, stream=True, timeout=120) as stream:
            for line in stream.iter_lines(decode_unicode=True):
                if not line or not line.startswith("data:"):
                    continue
                event = json.loads(line[5:])
                phases.append(event["phase"])
                output.append(event.get("output", "") or event.get("message", ""))
                if event["phase"] in ("finished", "error"):
                    break
        landing = self.http.get(self.classroom.url + data["base-url"] + data["path"], timeout=60)
        notebook = self.api("GET", f"api/contents/{TARGET}/notebooks/00-the-plugin-problem.ipynb",
                            params={"content": "0"})
        self.timings["nbgitpuller link"] = time.monotonic() - began
        return {"phases": phases, "output": "".join(output), "landing": landing.status_code,
                "notebook 00": notebook.status_code}

    # -- the server's REST API, through the hub's proxy -------------------
    def api(self, method: str, path: str, **kwargs) -> requests.Response:
        headers = {"Authorization": f"token {self.token}"}
        return requests.request(method, f"{self.server}/{path}", headers=headers,
                                timeout=60, **kwargs)

    def run_notebook(self, path: str, *, keep_kernel: bool = False,
                     cells: Optional[int] = None) -> "Run":
        """Run All, as JupyterLab does: a session in the notebook's folder, cell by cell
        (only the first `cells` code cells, if given)."""
        notebook = self.api("GET", f"api/contents/{path}").json()["content"]
        began = time.monotonic()
        session = self.api("POST", "api/sessions", json={
            "path": path, "name": path.rsplit("/", 1)[-1], "type": "notebook",
            "kernel": {"name": "python3"}}).json()
        kernel = Kernel(self, session["kernel"]["id"])
        result = Run(self.name, path, session["id"], session["kernel"]["id"])
        try:
            for index, cell in enumerate(notebook["cells"]):
                if cell["cell_type"] != "code":
                    continue
                outputs = kernel.execute("".join(cell["source"]))
                result.cells.append((index, outputs))
                if any(o["output_type"] == "error" for o in outputs) or \
                        len(result.cells) == cells:
                    break
        finally:
            result.seconds = time.monotonic() - began
            result.kernel_cpu = kernel.cpu_seconds()
            kernel.close()
            if not keep_kernel:
                self.api("DELETE", f"api/sessions/{session['id']}")
        return result

    def execute(self, code: str) -> List[dict]:
        """One cell in a fresh kernel of this student's (for probes), then shut it down."""
        kernel_id = self.api("POST", "api/kernels", json={"name": "python3"}).json()["id"]
        kernel = Kernel(self, kernel_id)
        try:
            return kernel.execute(code)
        finally:
            kernel.close()
            self.api("DELETE", f"api/kernels/{kernel_id}")


@dataclass
class Run:
    student: str
    path: str
    session: str
    kernel: str
    cells: List[tuple] = field(default_factory=list)      # (cell index, outputs)
    seconds: float = 0.0
    kernel_cpu: Optional[float] = None

    @property
    def errors(self) -> List[str]:
        return [f"cell {i}: {o['ename']}: {o['evalue']}" for i, outs in self.cells
                for o in outs if o["output_type"] == "error"]


class Kernel:
    """A kernel's channels websocket (the JSON protocol JupyterLab speaks)."""

    def __init__(self, student: Student, kernel_id: str) -> None:
        self.student, self.id = student, kernel_id
        self.session = uuid.uuid4().hex
        url = student.server.replace("http://", "ws://") + \
            f"/api/kernels/{kernel_id}/channels?session_id={self.session}"
        self.ws = websocket.create_connection(
            url, header=[f"Authorization: token {student.token}"], timeout=CELL_TIMEOUT)

    def execute(self, code: str) -> List[dict]:
        msg_id = uuid.uuid4().hex
        self.ws.send(json.dumps({
            "header": {"msg_id": msg_id, "username": self.student.name, "session": self.session,
                       "msg_type": "execute_request", "version": "5.3",
                       "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())},
            "parent_header": {}, "metadata": {}, "channel": "shell", "buffers": [],
            "content": {"code": code, "silent": False, "store_history": True,
                        "user_expressions": {}, "allow_stdin": False, "stop_on_error": True}}))
        outputs: List[dict] = []
        idle = replied = False
        while not (idle and replied):
            message = json.loads(self.ws.recv())
            if message.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            kind, content = message["msg_type"], message["content"]
            if message["channel"] == "shell" and kind == "execute_reply":
                replied = True
            elif kind == "status":
                idle = content["execution_state"] == "idle"
            elif kind == "stream":
                outputs.append({"output_type": "stream", "name": content["name"],
                                "text": content["text"]})
            elif kind in ("execute_result", "display_data"):
                outputs.append({"output_type": kind, "data": content["data"]})
            elif kind == "error":
                outputs.append({"output_type": "error", "ename": content["ename"],
                                "evalue": content["evalue"], "traceback": content["traceback"]})
        return outputs

    def cpu_seconds(self) -> Optional[float]:
        """The kernel's CPU time plus its reaped children's (compilers, workers)."""
        try:
            cells = self.execute(
                "import resource as _r\n"
                "_s, _c = _r.getrusage(_r.RUSAGE_SELF), _r.getrusage(_r.RUSAGE_CHILDREN)\n"
                "print(_s.ru_utime + _s.ru_stime + _c.ru_utime + _c.ru_stime)")
            return float("".join(o.get("text", "") for o in cells))
        except (ValueError, websocket.WebSocketException):
            return None

    def close(self) -> None:
        try:
            self.ws.close()
        except websocket.WebSocketException:
            pass


# ---------------------------------------------------------------------------
# comparing outputs as nbval does (tests/sanitize.cfg)
# ---------------------------------------------------------------------------
def sanitizers() -> List[tuple]:
    config = configparser.ConfigParser(interpolation=None)
    config.read(SANITIZE, encoding="utf-8")
    return [(re.compile(config[s]["regex"]), config[s]["replace"]) for s in config.sections()]


def _text(outputs: List[dict], rules: List[tuple]) -> str:
    """The text a cell showed: streams merged by name, results' text/plain, errors' names."""
    streams: Dict[str, str] = {}
    parts: List[str] = []
    for output in outputs:
        kind = output["output_type"]
        if kind == "stream":
            streams[output["name"]] = streams.get(output["name"], "") + _join(output["text"])
        elif kind in ("execute_result", "display_data"):
            text = output.get("data", {}).get("text/plain")
            if text is not None and "image/png" not in output.get("data", {}):
                parts.append(_join(text))
        elif kind == "error":
            parts.append(output["ename"])
    text = "".join(f"[{name}]{value}" for name, value in sorted(streams.items())) + "".join(parts)
    for regex, replacement in rules:
        text = regex.sub(replacement, text)
    return text


def _join(text) -> str:
    return "".join(text) if isinstance(text, list) else text


def compare_outputs(run_: Run, notebook: Path) -> List[str]:
    """Differences between what the kernel showed and the notebook's saved outputs."""
    saved = json.loads(notebook.read_text(encoding="utf-8"))["cells"]
    rules = sanitizers()
    differences = []
    for index, outputs in run_.cells:
        cell = saved[index]
        tags = set(cell.get("metadata", {}).get("tags", []))
        if tags & {"nbval-ignore-output", "nbval-skip"} or \
                "NBVAL_IGNORE_OUTPUT" in "".join(cell["source"]):
            continue
        want, got = _text(cell.get("outputs", []), rules), _text(outputs, rules)
        if want != got:
            differences.append(f"{notebook.name} cell {index}:\n--- saved\n{want}\n--- "
                               f"{run_.student}'s kernel\n{got}")
    return differences


def snapshot(folder: Path) -> Dict[str, tuple]:
    """Every file under `folder` with its size, mtime and owner: to see that nothing changed."""
    found = {}
    for path in folder.rglob("*"):
        try:
            info = path.lstat()
        except FileNotFoundError:
            continue
        found[str(path.relative_to(folder))] = (info.st_size, info.st_mtime_ns, info.st_uid)
    return found


def changed(before: Dict[str, tuple], after: Dict[str, tuple]) -> List[str]:
    return sorted(k for k in set(before) | set(after)
                  if before.get(k) != after.get(k) and "__pycache__" not in k)


PROBE = textwrap.dedent('''\
    import json, os, pathlib, minildr
    def attempt(path, mode):
        try:
            with open(path, mode) as f:
                f.write("x" if mode != "ab" else b"")
            return "WROTE"
        except OSError as exc:
            return type(exc).__name__
    targets = json.loads({targets!r})
    print(json.dumps({{"uid": os.getuid(), "home": os.path.expanduser("~"),
                      "minildr": minildr.__file__,
                      "writes": {{p: attempt(p, m) for p, m in targets}}}}))
''')


def probe(student: Student, targets: List[tuple]) -> dict:
    """From the student's own kernel: who am I, where is minildr, can I write these?"""
    outputs = student.execute(PROBE.format(targets=json.dumps(targets)))
    text = "".join(o.get("text", "") for o in outputs if o["output_type"] == "stream")
    errors = [o for o in outputs if o["output_type"] == "error"]
    if errors:
        raise RuntimeError(f"probe failed in {student.name}'s kernel: {errors}")
    return json.loads(text)


def in_parallel(jobs: Dict[str, callable]) -> Dict[str, object]:
    """Run the callables at once (threads); their results, or the exception each raised."""
    results: Dict[str, object] = {}

    def work(key, job):
        try:
            results[key] = job()
        except Exception as exc:        # reported by the caller, with the others' results
            results[key] = exc
    threads = [threading.Thread(target=work, args=item) for item in jobs.items()]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results
