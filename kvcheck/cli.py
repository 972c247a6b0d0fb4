"""The ``kvcheck`` command line: one click group whose subcommands load lazily.

Each subcommand lives beside the code it drives (``kvcheck.checker.cli`` for ``check``, ...)
and is imported only when it runs, so ``kvcheck --help`` and ``kvcheck check`` start fast.
Click's own exit codes are replaced by the project's (../shared/design/ARCHITECTURE.md):
usage errors and missing paths exit 64 and 66 instead of click's 2, which means "unknown".
"""

from __future__ import annotations

import importlib
import sys
import traceback
from typing import Any

import click

from kvcheck.exitcodes import ExitCode, KvcheckError

# name -> "module:attribute"; add a line here to add a command.
COMMANDS: dict[str, str] = {
    "check": "kvcheck.workloads.cli:check_command",
    "cluster": "kvcheck.reference.cluster:cluster",
    "ctl": "kvcheck.reference.ctl:ctl",
    "replay": "kvcheck.workloads.cli:replay_command",
    "run": "kvcheck.workloads.cli:run_command",
    "serve": "kvcheck.serve.cli:serve_command",
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = COMMANDS.get(cmd_name)
        if target is None:
            return None
        module_name, attr = target.split(":")
        command = getattr(importlib.import_module(module_name), attr)
        assert isinstance(command, click.Command)
        return command

    def main(self, *args: Any, **kwargs: Any) -> Any:
        kwargs["standalone_mode"] = False
        try:
            rv = super().main(*args, **kwargs)
        except click.exceptions.Exit as exc:  # --help, --version
            sys.exit(exc.exit_code)
        except click.exceptions.Abort:  # click's name for Ctrl-C (or end of input at a prompt)
            click.echo("kvcheck: interrupted", err=True)
            sys.exit(ExitCode.INTERRUPTED)
        except click.BadParameter as exc:
            exc.show()
            missing = isinstance(exc.ctx and exc.ctx.command, click.Command) and _is_missing_path(exc)
            sys.exit(ExitCode.NOINPUT if missing else ExitCode.USAGE)
        except click.ClickException as exc:
            exc.show()
            sys.exit(ExitCode.USAGE)
        except KvcheckError as exc:
            click.echo(f"kvcheck: {exc}", err=True)
            sys.exit(exc.code)
        except Exception:  # a bug of ours: never let it exit 1, which means "invalid"
            traceback.print_exc()
            click.echo("kvcheck: internal error (exit 70)", err=True)
            sys.exit(ExitCode.SOFTWARE)
        except BaseExceptionGroup as group:  # Ctrl-C inside trio arrives wrapped in a group
            if group.split(KeyboardInterrupt)[1] is not None:
                raise
            click.echo("kvcheck: interrupted", err=True)
            sys.exit(ExitCode.INTERRUPTED)
        # Commands return an exit code (or None for success).
        sys.exit(int(rv) if rv is not None else 0)


def _is_missing_path(exc: click.BadParameter) -> bool:
    return "does not exist" in str(exc.message)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="kvcheck")
def main() -> None:
    """Find consistency bugs in distributed key-value stores.

    Exit codes: 0 valid, 1 invalid, 2 unknown, 64 usage error, 65 malformed input,
    66 missing input, 70 internal error, 130 interrupted (Ctrl-C).
    """
