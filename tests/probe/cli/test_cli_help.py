"""Issue 20: every verb's and every experiment's ``--help`` shows each option's default."""

import argparse

import pytest

from probe.cli import build_parser


def _parsers(parser, path=("probe",)):
    """Yield (command path, parser) for ``parser`` and every subcommand below it."""
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _parsers(sub, (*path, name))


PARSERS = dict((" ".join(path), p) for path, p in _parsers(build_parser()))


def test_the_walk_sees_every_verb_and_experiment():
    assert {"probe export", "probe analyze", "probe run two-points", "probe run mnist"} <= set(
        PARSERS
    )


@pytest.mark.parametrize("command", sorted(PARSERS))
def test_every_option_shows_its_default(command):
    parser = PARSERS[command]
    text = parser.format_help()
    missing = []
    for action in parser._actions:
        if not action.option_strings or isinstance(action, argparse._HelpAction):
            continue
        shown = parser._get_formatter()._expand_help(action) if action.help else ""
        if "default" not in shown:
            missing.append(action.option_strings[-1])
    assert not missing, f"{command}: options without a stated default: {missing}\n{text}"


def test_two_points_help_says_halve_lr_is_on(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["run", "two-points", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "--halve-lr, --no-halve-lr" in out
    halve = out[out.index("--halve-lr, --no-halve-lr") :]
    assert "(default: on)" in halve[: halve.index("--dx2")]
