"""`triggers completion`: scripts generated from the parser, and bash really completes with them."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from triggers.cli import _parser, main
from triggers.cli._completion import commands, script

ROOT = Path(__file__).resolve().parents[2]


def complete_in_bash(line: str) -> list[str]:
    """What bash offers for `line` (the word being completed is its last one)."""
    words = line.split(" ")
    program = (
        script("bash", _parser())
        + f"COMP_WORDS=({' '.join(repr(w) for w in words)}); COMP_CWORD={len(words) - 1}\n"
        + '_triggers; printf "%s\\n" "${COMPREPLY[@]}"\n'
    )
    done = subprocess.run(
        ["bash", "-c", program], cwd=ROOT, capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0, done.stderr
    return [w for w in done.stdout.splitlines() if w]


@pytest.mark.skipif(shutil.which("bash") is None, reason="bash is not installed")
def test_bash_completes_commands_options_kinds_and_files() -> None:
    assert complete_in_bash("triggers re") == ["reconcile", "replay"]
    assert complete_in_bash("triggers plan --ma") == ["--matched"]
    assert complete_in_bash("triggers send s") == ["storage", "scheduler"]
    assert "--all-systems" in complete_in_bash("triggers demo --")
    assert complete_in_bash("triggers validate config/rul") == ["config/rules.yaml"]


def test_every_command_and_its_options_are_in_each_script() -> None:
    table = commands(_parser())
    assert {"plan", "serve", "send", "completion", "demo"} <= set(table)
    assert "--matched" in table["plan"][1] and table["send"][2] == [
        "pubsub",
        "storage",
        "scheduler",
    ]
    fish = script("fish", _parser())
    assert "complete -c triggers -f -n __fish_use_subcommand -a plan" in fish
    assert "complete -c triggers -n '__fish_seen_subcommand_from plan' -l matched" in fish
    assert script("zsh", _parser()).startswith("autoload -U +X bashcompinit && bashcompinit\n")


def test_the_command_prints_the_script(capsys) -> None:
    assert main(["completion", "bash"]) == 0
    assert "complete -o filenames -F _triggers triggers" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exited:
        main(["completion", "powershell"])
    assert exited.value.code == 2


def test_the_script_is_valid_bash_syntax(tmp_path) -> None:
    if shutil.which("bash") is None:
        pytest.skip("bash is not installed")
    path = tmp_path / "triggers.bash"
    path.write_text(script("bash", _parser()))
    assert subprocess.run(["bash", "-n", str(path)], timeout=30).returncode == 0
