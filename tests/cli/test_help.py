"""Help is for users: a description with examples at the top, and every option of our commands
explains itself and shows its default."""

from __future__ import annotations

import argparse

import pytest

from wasm_torch.cli import build_parser, main

OURS = ("compile", "run", "info", "package", "serve", "bench")


def _subparsers(p: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in p._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def test_top_level_help_is_for_users(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    text = capsys.readouterr().out
    assert "wasm-torch compile" in text and "wasm-torch run" in text  # examples, not an internal docstring
    assert "pip install 'wasm-torch[compile]'" in text  # which extra for what
    assert "parsing only" not in text


@pytest.mark.parametrize("name", OURS)
def test_every_option_has_help_and_shows_its_default(name, capsys):
    sub = _subparsers(build_parser())[name]
    for action in sub._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        assert action.help, f"{name} {action.option_strings or action.dest}: no help text"
    with pytest.raises(SystemExit):
        sub.parse_args(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    for action in sub._actions:
        d = action.default
        if action.option_strings and d not in (None, False, [], argparse.SUPPRESS):
            assert f"(default: {d})" in text, f"{name} {action.option_strings[0]}: default {d} not shown"


def test_serve_defaults_are_the_settings_defaults():
    from wasm_torch.serve.settings import ServeSettings

    a = build_parser().parse_args(["serve", "."])
    d = ServeSettings()
    assert (a.replicas, a.max_batch, a.cache, a.deadline, a.balancer) == (
        d.replicas, d.max_batch_size, d.cache_size, d.deadline_s, d.balancer
    )
    assert a.batch_delay_ms == pytest.approx(d.max_queue_delay_s * 1e3)


def test_progress_is_on_by_default():
    assert build_parser().parse_args(["compile", "m:f", "-o", "x"]).progress is True
    assert build_parser().parse_args(["compile", "m:f", "-o", "x", "--no-progress"]).progress is False


def test_version(capsys):
    from wasm_torch import __version__

    with pytest.raises(SystemExit):
        main(["--version"])
    assert __version__ in capsys.readouterr().out
