"""The Rapport SDK for Python plugins built with `componentize-py --stub-wasi`.

A component built without WASI has no stdout, stderr, clock or files: `print()`, `time.time()`,
`open()` and an uncaught exception each trap the whole call, and the host can only say
"unreachable executed". Importing this module fixes what can be fixed:

- `sys.stdout` and `sys.stderr` write to the contract's `log` (the plugin's execution trace):
  `print()` lines at info, stderr lines at warn.
- `time.time()` and `time.time_ns()` raise a `PluginError` saying where time comes from
  (`batch.now`, `change.at`).
- `@guarded` on an export turns an exception into the contract's `plugin-error`: a
  `PluginError` as you wrote it, anything else as "uncaught KeyError: 'x'" with its traceback
  in the log.
- Random numbers repeat the same sequence on every call (the generator is seeded when the
  component is built): fine for reproducible sampling, useless for secrets.
"""

import functools
import io
import json
import sys
import time
import traceback
from typing import Any, Callable, Optional, TypeVar

from componentize_py_types import Err
from wit_world.imports import log as _log
from wit_world.imports import config as _config
from wit_world.imports import types as _types


class PluginError(Exception):
    """An error the plugin means: its message (and field) reach the person who made the write."""

    def __init__(self, message: str, field: Optional[str] = None):
        super().__init__(message)
        self.message = message
        self.field = field


def log(level: str, message: str) -> None:
    """One line in the execution trace; `level` is trace, debug, info, warn or error."""
    _log.log(_log.Level[level.upper()], message)


class _LogStream(io.TextIOBase):
    """A text stream that sends each complete line to the log."""

    def __init__(self, level: "_log.Level"):
        self._level = level
        self._pending = ""

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        self._pending += text
        *lines, self._pending = self._pending.split("\n")
        for line in lines:
            _log.log(self._level, line)
        return len(text)

    def flush(self) -> None:
        if self._pending:
            _log.log(self._level, self._pending)
            self._pending = ""


sys.stdout = _LogStream(_log.Level.INFO)
sys.stderr = _LogStream(_log.Level.WARN)


def _no_clock(*_args: Any) -> Any:
    raise PluginError("a plugin has no clock: use the time the host passes in (`batch.now`, `change.at`)")


time.time = _no_clock
time.time_ns = _no_clock


def config(defaults: dict) -> dict:
    """The organization's configuration for this plugin over `defaults` (`{}` when none was set)."""
    value = json.loads(_config.get())
    if not isinstance(value, dict):
        raise PluginError("the configuration must be a JSON object")
    unknown = sorted(set(value) - set(defaults))
    if unknown:
        raise PluginError(f"unknown setting `{unknown[0]}`; known: {', '.join(sorted(defaults))}", unknown[0])
    return {**defaults, **value}


F = TypeVar("F", bound=Callable[..., Any])


def guarded(export: F) -> F:
    """Wraps an export so that an exception becomes a `plugin-error` (see the module's comment)."""

    @functools.wraps(export)
    def call(*args: Any, **kwargs: Any) -> Any:
        try:
            return export(*args, **kwargs)
        except Err:
            raise
        except PluginError as e:
            raise Err(_types.PluginError(message=e.message, field=e.field))
        except Exception as e:
            message = f"uncaught {type(e).__name__}: {e}"
            _log.log(_log.Level.ERROR, message + "\n" + traceback.format_exc())
            raise Err(_types.PluginError(message=message, field=None))
        finally:
            sys.stdout.flush()
            sys.stderr.flush()

    return call  # type: ignore[return-value]
