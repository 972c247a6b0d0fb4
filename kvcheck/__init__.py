"""kvcheck: find consistency bugs in distributed key-value stores.

The package root holds the command line (``kvcheck.cli``) and the exit codes every command
shares. The parts live in their own folders and import as ``kvcheck.checker``,
``kvcheck.reference``, ``kvcheck.workloads`` and ``kvcheck.histories``.
"""

from pathlib import Path

# Imported from a source checkout (python -m pytest, python -c ... in the repo root), the
# parts sit beside this folder rather than inside it: let ``kvcheck.checker`` find
# ``../checker``. An install maps them in (setup.py), and then this does nothing.
_root = Path(__file__).resolve().parent.parent
if (_root / "checker" / "__init__.py").is_file() and not (Path(__file__).parent / "checker").exists():
    __path__.append(str(_root))

from kvcheck.exitcodes import ExitCode  # noqa: E402

__version__ = "0.1.0"
__all__ = ["ExitCode", "__version__"]
