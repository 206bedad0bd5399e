"""What the CLI tests share: a tiny training run's flags, running a command
in-process, and the shape of a user error (one ``error: ...`` line, exit 2)."""
from rnncore.cli import main

TINY = ["--max-poems", "8", "--val-fraction", "0.25", "--hidden-size", "8", "--layers", "1",
        "--embedding-dim", "8", "--batch-size", "2", "--truncation", "8", "--device", "cpu",
        "--no-progress"]


def run_cli(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def assert_user_error(code, err, words):
    assert code == 2, err
    lines = [line for line in err.strip().splitlines() if line]
    assert len(lines) == 1 and lines[0].startswith("error: ") and words in lines[0], err
    assert "Traceback" not in err
