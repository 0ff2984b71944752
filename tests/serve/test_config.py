"""Limits as flags and config: `wasm-torch serve --config FILE` (TOML or JSON), per-model
settings that really change a model's pool and limits, flags winning over the file, and hostile
config files refused at start-up with the file and key named."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient

import wasm_torch.serve
from wasm_torch.cli import main
from wasm_torch.serve.app import create_app
from wasm_torch.serve.config import load_settings, read_config
from wasm_torch.serve.settings import ServeSettings, SettingsError

from .fakes import FakeModel

TOML = """
max_body_bytes = 67108864
read_timeout_s = 10
model_control = "explicit"
healing = false
auth_tokens = ["a", "b"]
audit_log = "logs/audit.jsonl"

[models.big]
max_batch_size = 32
replicas = 1
max_body_bytes = 1024
"""


def test_a_toml_file_sets_server_and_per_model_settings(tmp_path):
    f = tmp_path / "serve.toml"
    f.write_text(TOML)
    s = load_settings(f)
    assert (s.max_body_bytes, s.read_timeout_s, s.model_control, s.healing) == (64 << 20, 10.0, "explicit", False)
    assert s.auth_tokens == frozenset({"a", "b"}) and s.audit_log == tmp_path / "logs" / "audit.jsonl"
    big = s.for_model("big")
    assert (big.max_batch_size, big.replicas, big.max_body_bytes) == (32, 1, 1024)
    assert s.for_model("other") is s
    j = tmp_path / "serve.json"
    j.write_text(json.dumps({"max_queue": 7, "models": {"big": {"fuel": 1000}}}))
    assert load_settings(j).for_model("big").fuel == 1000 and load_settings(j).max_queue == 7


def test_per_model_settings_change_that_models_pool_and_limits_only():
    s = ServeSettings(replicas=2, healing=False, max_batch_size=8,
                      model_settings={"big": {"replicas": 1, "max_batch_size": 32, "max_body_bytes": 300}})  # fmt: skip
    app = create_app({"big": FakeModel, "small": FakeModel}, s, seed=0)
    pools = app.state.server.registry.pools
    assert [len(pools["big"].replicas), pools["big"].replicas[0].max_batch] == [1, 32]
    assert [len(pools["small"].replicas), pools["small"].replicas[0].max_batch] == [2, 8]
    body = {"inputs": [{"name": "x", "shape": [64, 4], "datatype": "FP32", "data": [0.5] * 256}]}  # ~1.2 kB
    with TestClient(app) as c:
        assert c.post("/v2/models/small/infer", json=body).status_code == 200
        r = c.post("/v2/models/big/infer", json=body)
        assert r.status_code == 413 and "300-byte limit" in r.json()["error"]


@pytest.mark.parametrize(
    "text,word",
    [
        ("max_bdy_bytes = 1", "unknown setting 'max_bdy_bytes'"),
        ('replicas = "2"', "replicas must be a whole number"),
        ("replicas = 2.5", "replicas must be a whole number"),
        ("healing = 1", "healing must be true or false"),
        ("read_timeout_s = -1", "read_timeout_s must be a finite number > 0"),
        ("replicas = 0", "replicas must be an integer >= 1"),
        ('model_control = "sometimes"', "model_control 'sometimes'"),
        ("grpc_port = 70000", "grpc_port must be None or a TCP port"),
        ("[models.m]\nauth_tokens = ['x']", "cannot be set per model"),
        ("[models.m]\nmax_batch_size = 0", "max_batch_size must be an integer >= 1"),
        ("[models.m]\nmax_bach = 1", "unknown setting 'max_bach'"),
        ("models = 3", "'models' must be a table"),
        ("replicas = ", "not valid TOML"),
        ("model_settings = {}", "unknown setting 'model_settings'"),
    ],
)
def test_hostile_config_files_are_refused_naming_the_file_and_key(tmp_path, text, word):
    f = tmp_path / "serve.toml"
    f.write_text(text)
    with pytest.raises(SettingsError) as e:
        load_settings(f)
    assert word in str(e.value) and str(f) in str(e.value)


def test_a_config_that_is_not_a_table_or_not_readable_is_refused(tmp_path):
    j = tmp_path / "c.json"
    j.write_text("[1, 2]")
    with pytest.raises(SettingsError, match="table of settings"):
        read_config(j)
    with pytest.raises(SettingsError, match="cannot read"):
        read_config(tmp_path / "missing.toml")
    (tmp_path / "bin.toml").write_bytes(b"\xff\xfe\x00")
    with pytest.raises(SettingsError, match="cannot read"):
        read_config(tmp_path / "bin.toml")


def test_flags_given_on_the_command_line_win_over_the_file(tmp_path, monkeypatch):
    seen = {}
    monkeypatch.setattr(wasm_torch.serve, "serve", lambda models, **kw: seen.update(kw))
    f = tmp_path / "serve.toml"
    f.write_text("max_batch_size = 16\nmax_queue = 9\nreplicas = 3\n[models.m]\nmax_batch_size = 4\n")
    assert main(["serve", str(tmp_path), "--config", str(f), "--max-batch", "8", "--no-grpc"]) == 0
    s = seen["settings"]
    assert (s.max_batch_size, s.max_queue, s.replicas, s.grpc_port) == (8, 9, 3, None)  # flag, file, file, flag
    assert s.for_model("m").max_batch_size == 4
    assert main(["serve", str(tmp_path), "--config", str(f), "--replicas", "2"]) == 0  # = the default, but given
    assert seen["settings"].replicas == 2 and seen["settings"].grpc_port == 8001


def test_a_bad_config_file_is_one_line_on_stderr_and_status_2(tmp_path, capsys):
    f = tmp_path / "serve.toml"
    f.write_text("replicas = 'many'\n")
    assert main(["serve", str(tmp_path), "--config", str(f)]) == 2
    err = capsys.readouterr().err
    assert "replicas must be a whole number" in err and "Traceback" not in err


def test_autoscaling_flags_reach_ray_and_bad_bounds_are_refused(tmp_path, monkeypatch, capsys):
    import wasm_torch.serve.ray.app as ray_app

    seen = {}
    monkeypatch.setattr(ray_app, "run", lambda models, settings, **kw: seen.update(kw, settings=settings))
    argv = ["serve", str(tmp_path), "--ray", "--min-replicas", "1", "--max-replicas", "3", "--target-ongoing", "4"]
    assert main(argv) == 0
    assert seen["autoscaling"] == {"min_replicas": 1, "max_replicas": 3, "target_ongoing_requests": 4.0}
    assert seen["settings"].grpc_port is None  # Ray's proxy serves HTTP only
    for bad, word in [
        (["--max-replicas", "3"], "add --ray"),
        (["--ray", "--min-replicas", "3", "--max-replicas", "2"], "above --max-replicas"),
        (["--ray", "--grpc-port", "9001"], "not served under --ray"),
    ]:
        with pytest.raises(SystemExit) as e:
            main(["serve", str(tmp_path), *bad])
        assert e.value.code == 2 and word in capsys.readouterr().err
    assert ray_app.Autoscaling(1, 3, 4.0).config()["max_replicas"] == 3
    with pytest.raises(ValueError, match="min_replicas"):
        ray_app.Autoscaling(min_replicas=3, max_replicas=2)
