"""`wasm-torch gov propose | vote | list | show` against a real coordinator, and bad flags: a clear
message and a non-zero exit, never a traceback."""

from __future__ import annotations

import json

import pytest

from wasm_torch.net import economy

from .test_cli import _run

MICRO = economy.MICRO


def test_gov_commands_end_to_end(make_net, serve, keys, capsys):
    net = make_net(params={"vote_period_s": 60.0, "join_stake": 10 * MICRO})
    url = serve(net.coord).url
    priv, _, me = keys.make("gov-cli")
    net.grant(me.id, 20 * MICRO)
    net.register("me", stake=20 * MICRO, signer=me)
    code, out = _run("gov", "propose", "--coordinator", url, "--key", str(priv), "--set", "price_floor=1500",
                     "--title", "cheaper", capsys=capsys)  # fmt: skip
    assert code == 0, out
    pid = json.loads(out)["proposal"]
    code, out = _run("gov", "vote", pid, "yes", "--coordinator", url, "--key", str(priv), capsys=capsys)
    assert code == 0 and json.loads(out)["choice"] == "yes", out
    code, out = _run("gov", "list", "--coordinator", url, capsys=capsys)
    got = json.loads(out)["proposals"]
    assert code == 0 and got[0]["proposal"] == pid and got[0]["tally"]["voters"] == 1
    code, out = _run("gov", "show", pid, "--coordinator", url, capsys=capsys)
    assert code == 0 and json.loads(out)["changes"] == {"price_floor": 1500}
    code, out = _run("gov", "vote", pid, "no", "--coordinator", url, "--key", str(priv), capsys=capsys)
    assert code != 0 and "already voted" in out and "Traceback" not in out


@pytest.mark.parametrize(
    "args,words",
    [
        (["gov", "propose", "--coordinator", "http://127.0.0.1:9", "--key", "KEY"], "--set"),
        (["gov", "propose", "--coordinator", "URL", "--key", "KEY", "--set", "heartbeat_s=1"], "cannot be changed by vote"),
        (["gov", "propose", "--coordinator", "URL", "--key", "KEY", "--set", "replication"], "NAME=VALUE"),
        (["gov", "vote", "ab" * 32, "maybe", "--coordinator", "URL", "--key", "KEY"], "invalid choice"),
        (["gov", "vote", "ab" * 32, "yes", "--coordinator", "URL", "--key", "KEY"], "unknown proposal"),
        (["gov", "vote", "ab" * 32, "yes", "--coordinator", "URL", "--key", "/nonexistent.key"], "does not exist"),
        (["gov", "list", "--coordinator", "http://127.0.0.1:9"], "127.0.0.1:9"),
        (["gov", "show", "zz", "--coordinator", "URL"], "unknown proposal"),
    ],
)
def test_bad_gov_flags_fail_clearly(args, words, make_net, serve, keys, capsys):
    net = make_net()
    url = serve(net.coord).url
    priv, _, s = keys.make("gov-cli-bad")
    net.grant(s.id, 20 * MICRO)
    net.register("s", stake=20 * MICRO, signer=s)
    subst = {"KEY": str(priv), "URL": url}
    code, text = _run(*[subst.get(a, a) for a in args], capsys=capsys)
    assert code != 0 and words in text and "Traceback" not in text, text
