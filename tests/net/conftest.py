"""Fixtures for the edge network: a compiled + signed MLP, keys, coordinators and nodes started the
way users start them (`wasm-torch coordinator`, `wasm-torch node`), in-process apps for the hostile
route tests, and a throwaway PostgreSQL cluster (initdb + pg_ctl in a temp dir on loopback)."""

from __future__ import annotations

import contextlib
import glob
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from wasm_torch.integrity.signing import generate_key, sign_artifact, write_private_key, write_public_key
from wasm_torch.net.wire import Signer

WASM_TORCH = str(Path(sys.executable).parent / "wasm-torch")
IN_DIM, OUT_DIM, MAX_BATCH = 16, 8, 16


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class KeyFiles:
    """keys.make('node1') -> (private path, public path, Signer)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    def make(self, name: str) -> tuple[Path, Path, Signer]:
        priv, pub = self.root / f"{name}.key", self.root / f"{name}.pub"
        if not priv.exists():
            k = generate_key("ed25519")
            write_private_key(k, priv)
            write_public_key(k, pub)
        return priv, pub, Signer.from_file(priv)


@pytest.fixture(scope="session")
def keys(tmp_path_factory) -> KeyFiles:
    return KeyFiles(tmp_path_factory.mktemp("keys"))


@pytest.fixture(scope="session")
def mlp(tmp_path_factory, keys):
    """(artifact folder signed by the 'publisher' key, torch model, publisher .pub path)."""
    import torch
    from torch.export import Dim

    import wasm_torch

    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Linear(IN_DIM, 32), torch.nn.ReLU(), torch.nn.Linear(32, OUT_DIM)
    ).eval()
    folder = tmp_path_factory.mktemp("art") / "mlp"
    wasm_torch.compile(
        model, (torch.randn(4, IN_DIM),), folder, dynamic_shapes=({0: Dim("batch", min=1, max=MAX_BATCH)},)
    )
    priv, pub, _ = keys.make("publisher")
    from wasm_torch.integrity.signing import load_private_key

    sign_artifact(folder, [load_private_key(priv)])
    return folder, model, pub


def inputs(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, IN_DIM)).astype(np.float32)


# ---- processes ----------------------------------------------------------------------------------
def wait_http(url: str, proc: subprocess.Popen | None = None, timeout: float = 60.0) -> dict:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{proc.args} exited with {proc.returncode}: {_tail(proc)}")
        try:
            with urllib.request.urlopen(url + "/v1/info", timeout=2) as r:
                return json.loads(r.read())
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"{url} did not answer within {timeout} s")


def _tail(proc: subprocess.Popen) -> str:
    log = getattr(proc, "log_path", None)
    return Path(log).read_text()[-3000:] if log and Path(log).exists() else ""


class Procs:
    """Start `wasm-torch coordinator|node` subprocesses; everything started is stopped at teardown."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.procs: list[subprocess.Popen] = []

    def _spawn(self, args: list[str], log: Path) -> subprocess.Popen:
        f = open(log, "ab")  # noqa: SIM115 - closed with the process at teardown
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
        p = subprocess.Popen([WASM_TORCH, *args], stdout=f, stderr=subprocess.STDOUT, env=env)
        p.log_path = str(log)  # type: ignore[attr-defined]
        p.log_file = f  # type: ignore[attr-defined]
        self.procs.append(p)
        return p

    def coordinator(self, name: str, key: Path, trust: Path, db: str | None = None, port: int | None = None,
                    extra: list[str] = ()) -> tuple[str, subprocess.Popen]:  # fmt: skip
        port = port or free_port()
        db = db or str(self.root / f"{name}.db")
        args = ["coordinator", "--db", db, "--port", str(port), "--key", str(key), "--trust", str(trust), *extra]
        p = self._spawn(args, self.root / f"{name}.log")
        url = f"http://127.0.0.1:{port}"
        wait_http(url, p)
        return url, p

    def node(self, name: str, coordinators: list[str], key: Path, trust: Path, extra: list[str] = ()) -> subprocess.Popen:
        args = ["node", "--key", str(key), "--trust", str(trust), "--work-dir", str(self.root / f"work-{name}"),
                "--name", name, *[a for c in coordinators for a in ("--coordinator", c)], *extra]  # fmt: skip
        return self._spawn(args, self.root / f"{name}.log")

    def stop_all(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.terminate()
        for p in self.procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
            p.log_file.close()  # type: ignore[attr-defined]


@pytest.fixture
def procs(tmp_path) -> Iterator[Procs]:
    p = Procs(tmp_path)
    yield p
    p.stop_all()


# ---- PostgreSQL ---------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A throwaway cluster: initdb + pg_ctl in a temp dir, loopback port, trust auth; removed after.
    Missing binaries fail (never skip): run scripts/setup_postgres.sh."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not found:
        pytest.fail("PostgreSQL server binaries are missing: run scripts/setup_postgres.sh")
    bindir = Path(found[-1]).parent
    as_user: list[str] = []
    root = Path(tempfile.mkdtemp(prefix="wt-pg-"))
    if os.geteuid() == 0:  # the server refuses to run as root: run it as the unprivileged postgres user
        as_user = ["runuser", "-u", "postgres", "--"]
        shutil.chown(root, "postgres")
    data, port = root / "data", free_port()
    try:
        subprocess.run([*as_user, str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust",
                        "-E", "UTF8", "--no-sync"], check=True, capture_output=True)  # fmt: skip
        opts = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=on"
        subprocess.run([*as_user, str(bindir / "pg_ctl"), "-D", str(data), "-o", opts, "-l", str(root / "log"),
                        "-w", "start"], check=True, capture_output=True)  # fmt: skip
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*as_user, str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
                       capture_output=True)  # fmt: skip
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def pg_database(postgres_url) -> Iterator[str]:
    """A fresh database in the session cluster, dropped afterwards."""
    import sqlalchemy as sa

    name = f"wt_{os.urandom(4).hex()}"
    admin = sa.create_engine(postgres_url.replace("postgresql://", "postgresql+psycopg://"), isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(sa.text(f"CREATE DATABASE {name}"))
    yield postgres_url.rsplit("/", 1)[0] + "/" + name
    with admin.connect() as c:
        c.execute(sa.text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
    admin.dispose()


def artifact_files(folder: Path) -> dict[str, str]:
    """manifest.json, signature.json and every file the manifest lists, base64 (an upload body)."""
    from wasm_torch.net.wire import b64e

    names = ["manifest.json", "signature.json", *json.loads((folder / "manifest.json").read_text())["files"]]
    return {n: b64e((folder / n).read_bytes()) for n in names}


# ---- in-process coordinator (the real app through Starlette's TestClient) -----------------------
class Net:
    """One coordinator app in this process, with helpers that speak its protocol."""

    def __init__(self, root: Path, publisher_pub: Path, db_url: str | None = None, params: dict | None = None,
                 peer_keys: dict[str, bytes] | None = None, peers: list[str] = (), signer: Signer | None = None):  # fmt: skip
        from fastapi.testclient import TestClient

        from wasm_torch.net.coordinator import Coordinator, create_app
        from wasm_torch.net.store import Store

        self.signer = signer or Signer.generate()
        self.store = Store(db_url or str(root / f"coord-{os.urandom(3).hex()}.db"), self.signer, peer_keys)
        if params:
            self.store.set_params(params)
        self.coord = Coordinator(self.store, trusted_publishers=[publisher_pub], peers=list(peers), sweep_s=0.2)
        self.client = TestClient(create_app(self.coord), raise_server_exceptions=False)
        self.client.__enter__()
        self.modules: dict[str, object] = {}

    def close(self) -> None:
        self.client.__exit__(None, None, None)
        self.store.engine.dispose()

    @property
    def id(self) -> str:
        return self.signer.id

    def post(self, path: str, signer: Signer, payload: dict, **kw):
        return self.client.post(path, json=signer.seal(payload, self.id), **kw)

    def register(self, name: str = "n", stake: int = 0, signer: Signer | None = None) -> Signer:
        from wasm_torch.net.wire import b64e

        s = signer or Signer.generate()
        r = self.post("/v1/nodes/register", s, {"type": "register", "pubkey": b64e(s.public_raw), "name": name,
                                                 "kind": "python", "stake": stake})  # fmt: skip
        assert r.status_code == 200, r.text
        return s

    def grant(self, account: str, micro: int) -> None:
        r = self.post("/v1/ledger/grant", self.signer, {"type": "grant", "account": account, "amount": micro, "note": "t"})
        assert r.status_code == 200, r.text

    def upload(self, folder: Path) -> str:
        files = artifact_files(folder)
        r = self.client.post("/v1/artifacts", json={"files": files})
        assert r.status_code == 200, r.text
        return r.json()["sha"]

    def job(self, owner: Signer, folder: Path, x: np.ndarray, batch: int = 1, priority: bool = False):
        from wasm_torch.net.submit import split
        from wasm_torch.net.wire import b64e

        sha = self.upload(folder)
        payload = {"type": "job", "pubkey": b64e(owner.public_raw), "artifact": sha,
                   "tasks": split([x], ["input"], batch), "priority": priority}  # fmt: skip
        return self.post("/v1/jobs", owner, payload)

    def lease(self, node: Signer):
        r = self.post("/v1/tasks/lease", node, {"type": "lease"})
        assert r.status_code in (200, 204), r.text
        return None if r.status_code == 204 else r.json()

    def result(self, folder: Path, task: dict, wrong: bool = False) -> dict:
        """The result payload an honest (or wrong) node sends for `task`."""
        from wasm_torch.net import tensors
        from wasm_torch.runtime import load

        key = str(folder)
        if key not in self.modules:
            self.modules[key] = load(folder, variant="simd128", threads=1)
        m = self.modules[key]
        named_in = tensors.decode(task["inputs"], "inputs", 1 << 24)
        out = m.run(dict(named_in))
        named = [(s.name, out[s.name]) for s in m.outputs]
        if wrong:
            named = [(n, a + 1) for n, a in named]
        return {"type": "result", "assignment": task["assignment"], "task": task["task"],
                "hash": tensors.output_hash(named), "units": task["units"], "outputs": tensors.encode(named)}  # fmt: skip

    def node_row(self, node_id: str) -> dict:
        return next(n for n in self.coord.status()["nodes"] if n["id"] == node_id)


@pytest.fixture
def net(tmp_path, mlp) -> Iterator[Net]:
    n = Net(tmp_path, mlp[2])
    yield n
    n.close()


@pytest.fixture
def make_net(tmp_path, mlp):
    made: list[Net] = []

    def make(**kw) -> Net:
        n = Net(tmp_path, mlp[2], **kw)
        made.append(n)
        return n

    yield make
    for n in made:
        n.close()


# ---- real HTTP for in-process apps, and a TCP proxy that can be cut (network partitions) ----------
class Served:
    """A coordinator app on a loopback port (uvicorn in a thread)."""

    def __init__(self, coord) -> None:
        import threading

        import uvicorn

        from wasm_torch.net.coordinator import create_app

        self.port = free_port()
        cfg = uvicorn.Config(create_app(coord), host="127.0.0.1", port=self.port, log_level="warning", access_log=False)
        self.server = uvicorn.Server(cfg)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.port}"
        wait_http(self.url)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


class Proxy:
    """Forwards a loopback port to another; `cut()` drops every connection and refuses new ones."""

    def __init__(self, target_port: int) -> None:
        import threading

        self.target = target_port
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.up = True
        self.conns: list[socket.socket] = []
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        import threading

        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            if not self.up:
                c.close()
                continue
            try:
                u = socket.create_connection(("127.0.0.1", self.target))
            except OSError:
                c.close()
                continue
            with self.lock:
                self.conns += [c, u]
            for a, b in ((c, u), (u, c)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(a: socket.socket, b: socket.socket) -> None:
        try:
            while data := a.recv(65536):
                b.sendall(data)
        except OSError:
            pass
        finally:
            for s in (a, b):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def cut(self) -> None:
        self.up = False
        with self.lock:
            for s in self.conns:
                try:
                    s.shutdown(socket.SHUT_RDWR)
                    s.close()
                except OSError:
                    pass
            self.conns.clear()

    def heal(self) -> None:
        self.up = True

    def close(self) -> None:
        self.cut()
        self.sock.close()


@pytest.fixture
def serve():
    started: list[Served] = []

    def start(coord) -> Served:
        s = Served(coord)
        started.append(s)
        return s

    yield start
    for s in started:
        s.stop()


# ---- headless Chromium ---------------------------------------------------------------------------
ROOT = Path(__file__).resolve().parents[2]
PLAYWRIGHT = ROOT / ".cache" / "node"
CHROMIUM = Path("/usr/bin/chromium")


@pytest.fixture(scope="session")
def chromium():
    """chromium(url, until, result, tmp, timeout_ms, signal=None) -> page result. Missing node,
    chromium or playwright-core fail (never skip): run scripts/setup_browser.sh."""
    node = shutil.which("node")
    if node is None or not CHROMIUM.exists():
        pytest.fail("node or /usr/bin/chromium is missing: run scripts/setup_browser.sh")
    if not (PLAYWRIGHT / "node_modules" / "playwright-core").is_dir():
        pytest.fail(f"playwright-core is not in {PLAYWRIGHT}: run scripts/setup_browser.sh")

    def run(url: str, until: str, result: str, tmp: Path, timeout_ms: int = 180_000, signal: Path | None = None,
            background: bool = False):  # fmt: skip
        job = {"playwright": str(PLAYWRIGHT) + "/", "url": url, "until": until, "result": result,
               "timeoutMs": timeout_ms, "signal": str(signal) if signal else None}  # fmt: skip
        spec = tmp / f"browser-{os.urandom(3).hex()}.json"
        spec.write_text(json.dumps(job))
        cmd = [node, str(Path(__file__).with_name("browser.mjs")), str(spec)]
        if background:
            return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_ms / 1000 + 60)
        return parse_browser(p.returncode, p.stdout, p.stderr)

    return run


def parse_browser(code: int, stdout: str, stderr: str) -> dict:
    assert code == 0, f"browser.mjs failed:\n{stdout[-3000:]}\n{stderr[-3000:]}"
    res = json.loads(stdout.strip().splitlines()[-1])
    assert "fatal" not in res, (res["fatal"], res.get("state"), res["console"][-20:], res["pageErrors"])
    return res


@pytest.fixture
def static_site():
    """static_site(folder) -> URL of a loopback static server (with .mjs and .wasm MIME types)."""
    import functools
    import http.server
    import threading

    class Handler(http.server.SimpleHTTPRequestHandler):
        extensions_map = {**http.server.SimpleHTTPRequestHandler.extensions_map,  # noqa: RUF012
                          ".mjs": "text/javascript", ".wasm": "application/wasm"}  # fmt: skip

        def log_message(self, *a):
            pass

    servers = []

    def start(folder: Path) -> str:
        srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(folder)))
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        servers.append(srv)
        return f"http://127.0.0.1:{srv.server_port}/"

    yield start
    for s in servers:
        s.shutdown()
