"""`wasm-torch coordinator | node | ledger | job`: bad flags and files give a clear message and a
non-zero exit, never a traceback; `ledger verify` checks a database offline; the job commands run a
job end to end against a real coordinator."""

from __future__ import annotations

import json
import shutil
import subprocess
import threading

import numpy as np
import pytest

from wasm_torch.cli import main
from wasm_torch.net import economy
from wasm_torch.net.store import Store

from .conftest import WASM_TORCH, inputs


def _run(*args: str, capsys) -> tuple[int, str]:
    """The CLI in this process (what the `wasm-torch` script runs): exit code and everything printed."""
    try:
        code = main(list(args))
    except SystemExit as e:  # argparse and the commands' own usage errors
        code = e.code if isinstance(e.code, int) else 2
        if not isinstance(e.code, int):
            print(e.code)
    out = capsys.readouterr()
    return code, out.out + out.err


@pytest.mark.parametrize(
    "args,words",
    [
        (["coordinator", "--key", "/nonexistent.key"], "does not exist"),
        (["coordinator", "--key", "KEY", "--db", "mysql://x/y"], "unsupported database URL"),
        (["coordinator", "--key", "KEY", "--db", "DB", "--param", "replication=1"], "replication must be >= 2"),
        (["coordinator", "--key", "KEY", "--db", "DB", "--param", "nonsense=1"], "unknown network parameters"),
        (["coordinator", "--key", "KEY", "--db", "DB", "--param", "replication"], "NAME=VALUE"),
        (["coordinator", "--key", "PUB", "--db", "DB"], "public key"),
        (["node", "--coordinator", "http://127.0.0.1:9", "--key", "NODEKEY", "--trust", "PUB", "--fault", "explode"],
         "unknown --fault"),
        (["node", "--coordinator", "http://127.0.0.1:9", "--key", "NODEKEY", "--trust", "/nonexistent.pub"],
         "does not exist"),
        (["ledger", "grant", "ed25519:" + "0" * 32, "-5", "--coordinator", "http://127.0.0.1:9", "--key", "KEY"],
         "cannot be negative"),
        (["ledger", "grant", "ed25519:" + "0" * 32, "lots", "--coordinator", "http://127.0.0.1:9", "--key", "KEY"],
         "amount of credits"),
        (["ledger", "balance", "/nonexistent.pub", "--coordinator", "http://127.0.0.1:9"], "does not exist"),
        (["ledger", "root", "--coordinator", "http://127.0.0.1:9"], "127.0.0.1:9"),
        (["ledger", "params", "--coordinator", "http://127.0.0.1:9", "--set", "replication=3"], "--key"),
        (["job", "submit", "ART", "X", "--coordinator", "http://127.0.0.1:9", "--key", "KEY"], "not signed"),
    ],
)
def test_bad_flags_and_files_fail_clearly(args, words, keys, tmp_path, mlp, capsys):
    priv, pub, _ = keys.make("cli")
    art = tmp_path / "unsigned"
    shutil.copytree(mlp[0], art)
    (art / "signature.json").unlink()
    np.save(tmp_path / "x.npy", inputs(2), allow_pickle=False)
    subst = {"KEY": str(priv), "PUB": str(pub), "DB": str(tmp_path / "c.db"), "NODEKEY": str(tmp_path / "n.key"),
             "ART": str(art), "X": str(tmp_path / "x.npy")}  # fmt: skip
    code, text = _run(*[subst.get(a, a) for a in args], capsys=capsys)  # an exception would fail the test
    assert code != 0 and words in text, text


def test_the_installed_script_exits_cleanly_on_errors():
    p = subprocess.run([WASM_TORCH, "coordinator", "--key", "/nonexistent.key"], capture_output=True, text=True,
                       timeout=300)  # fmt: skip
    assert p.returncode == 2 and "does not exist" in p.stderr and "Traceback" not in p.stderr


def test_ledger_verify_offline(keys, tmp_path, capsys):
    _, pub, signer = keys.make("verify-coord")
    st = Store(str(tmp_path / "c.db"), signer)
    with st.tx() as tx:
        tx.issue("mint", "alice", 5 * economy.MICRO, "")
        tx.issue("stake", "alice", economy.MICRO, "")
    root = st.ledger.root()
    st.engine.dispose()
    assert main(["ledger", "verify", "--db", str(tmp_path / "c.db"), "--peer-key", str(pub)]) == 0
    got = json.loads(capsys.readouterr().out)
    assert got["root"] == root and got["verified"] == 2 and got["unverified"] == 0
    assert main(["ledger", "verify", "--db", str(tmp_path / "c.db")]) == 1  # issuer key not given
    import sqlite3

    with sqlite3.connect(tmp_path / "c.db") as c:  # tamper with an amount on disk
        body = json.loads(c.execute("select body from ledger where seq=1").fetchone()[0])
        body["amount"] += 1
        c.execute("update ledger set body=? where seq=1", (json.dumps(body),))
    capsys.readouterr()
    assert main(["ledger", "verify", "--db", str(tmp_path / "c.db"), "--peer-key", str(pub)]) == 1
    assert "forged" in capsys.readouterr().err


def test_job_commands_end_to_end(net, mlp, serve, keys, tmp_path, capsys):
    from wasm_torch.net.node import Node, NodeOptions

    url = serve(net.coord).url
    priv, _, owner = keys.make("cli-owner")
    net.grant(owner.id, 10 * economy.MICRO)
    np.save(tmp_path / "x.npy", inputs(6), allow_pickle=False)
    assert main(["job", "submit", str(mlp[0]), str(tmp_path / "x.npy"), "--coordinator", url, "--key", str(priv),
                 "--batch", "3"]) == 0  # fmt: skip
    job = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["job"]
    nodes = [Node(NodeOptions(coordinators=[url], key=tmp_path / f"n{i}.key", trust=[mlp[2]],
                              work_dir=tmp_path / f"w{i}", max_tasks=2, idle_exit_s=60)) for i in range(2)]  # fmt: skip
    threads = [threading.Thread(target=n.run) for n in nodes]
    for t in threads:
        t.start()
    assert main(["job", "watch", job, "--coordinator", url, "--every", "0.2"]) == 0
    assert "2/2 done" in capsys.readouterr().out
    for t in threads:
        t.join(timeout=60)
    assert main(["job", "fetch", job, "--coordinator", url, "-o", str(tmp_path / "y.npy")]) == 0
    y = np.load(tmp_path / "y.npy", allow_pickle=False)
    from wasm_torch.runtime import load

    assert np.array_equal(y, load(mlp[0], variant="simd128", threads=1)(inputs(6)))
    capsys.readouterr()
    assert main(["ledger", "balance", str(keys.make("cli-owner")[1]), "--coordinator", url]) == 0
    bal = json.loads(capsys.readouterr().out)
    assert bal["reserved"] == 0 and bal["spent"] > 0
