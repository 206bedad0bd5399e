"""Every command in the README's code blocks runs as written (issue #17): the shell lines
with the environment activated (this interpreter's bin directory first on PATH, as
`source .venv/bin/activate` does), in a fresh directory, in order; the Python block as a
script. Skipped, with the reason: the two setup lines (they create a venv and install from
the network) and torchrun (several processes; tests/test_distributed.py covers it)."""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SKIP = {"python3 -m venv": "a setup line: makes a venv and installs from the network",
        "torchrun": "several processes; tests/test_distributed.py covers data parallel"}


def readme_blocks() -> list[tuple[str, str]]:
    """(language, text) of every fenced code block of README.md, in order."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    return re.findall(r"^```(\w*)\n(.*?)^```", text, flags=re.S | re.M)


def shell_commands() -> list[str]:
    """The README's shell lines, backslash continuations joined."""
    out = []
    for lang, body in readme_blocks():
        if lang == "bash":
            out += [c.strip() for c in body.replace("\\\n", " ").splitlines() if c.strip()]
    return out


def _skip_reason(command: str) -> str | None:
    return next((why for start, why in SKIP.items() if command.startswith(start)), None)


def test_the_readme_shows_what_this_test_runs():
    commands = shell_commands()
    assert sum(_skip_reason(c) is not None for c in commands) == 3, commands
    assert any("--acrostic" in c for c in commands)
    assert [lang for lang, _ in readme_blocks()].count("python") == 1


@pytest.mark.slow
def test_every_readme_command_runs_as_written(tmp_path):
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
               PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
               OMP_NUM_THREADS="1")
    skipped = []
    for command in shell_commands():
        reason = _skip_reason(command)
        if reason:
            skipped.append(f"{command.split()[0]}: {reason}")
            continue
        done = subprocess.run(["bash", "-c", command], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, f"{command}\n{done.stderr[-2000:]}"
        assert "error:" not in done.stderr, f"{command}\n{done.stderr[-2000:]}"
    python = [body for lang, body in readme_blocks() if lang == "python"]
    for body in python:
        done = subprocess.run([sys.executable, "-c", body], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, f"{body}\n{done.stderr[-2000:]}"
    print("skipped:", *skipped, sep="\n  ")
    assert (tmp_path / "runs" / "lstm" / "step-000040" / "meta.json").is_file()
