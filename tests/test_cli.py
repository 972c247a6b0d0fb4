"""The command line's shared behaviour: exit codes and help."""

import subprocess
import sys

from click.testing import CliRunner

from kvcheck import ExitCode
from kvcheck.cli import main


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kvcheck", *args], capture_output=True, text=True, timeout=60
    )


def test_help_lists_exit_codes() -> None:
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0
    assert "64 usage error" in result.output


def test_unknown_command_is_usage_error_64_not_click_2() -> None:
    proc = run("no-such-command")
    assert proc.returncode == ExitCode.USAGE
    assert "No such command" in proc.stderr
