"""The exceptions fanren raises. Each knows how to show itself and which exit code it means.

Only the CLI turns them into output and exit codes; the library never prints errors.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path


class FanrenError(Exception):
    """Base of every error fanren raises on purpose."""

    exit_code = 1

    def show(self) -> str:
        return f"error: {self}"


@dataclass
class Problem:
    """One thing wrong with the user's input, with where it is."""

    file: Path | str
    key_path: str
    expected: str
    got: str | None = None
    hint: str | None = None
    line: int | None = None

    def show(self) -> str:
        where = str(self.file)
        if self.line is not None:
            where += f":{self.line}"
        if self.key_path:
            where += f": {self.key_path}"
        text = f"{where}: expected {self.expected}"
        if self.got is not None:
            text += f", got {self.got}"
        if self.hint:
            text += f" ({self.hint})"
        return text


class DramaError(FanrenError):
    """Bad input: one or more problems in drama.toml, a template or a reference. Exit code 2."""

    exit_code = 2

    def __init__(self, problems: list[Problem] | Problem) -> None:
        self.problems = problems if isinstance(problems, list) else [problems]
        super().__init__(self.show())

    def show(self) -> str:
        if len(self.problems) == 1:
            return "error: " + self.problems[0].show()
        lines = [f"error: {len(self.problems)} problems"]
        lines += ["  " + p.show() for p in self.problems]
        return "\n".join(lines)


class UsageError(FanrenError):
    """A command was asked for something that cannot be (unknown node, unknown profile). Exit 2."""

    exit_code = 2

    def __init__(self, message: str) -> None:
        super().__init__(message)


class OptionError(UsageError, ValueError):
    """A bad engine option: which one, what was expected, what it got. Exit code 2.

    Engines raise it while they are constructed, before anything runs; the compiler shows it as a
    Problem at the option's place in drama.toml (`profiles.<profile>.<family>.<option>`). It is a
    ValueError too, so code that catches an engine's ValueError for bad options still does.
    """

    def __init__(self, engine: str, option: str, expected: str, got: str | None = None,
                 hint: str | None = None) -> None:
        self.engine, self.option, self.expected, self.got, self.hint = engine, option, expected, got, hint
        text = f"option {option}: expected {expected}"
        if engine:
            text = f"engine {engine}: {text}"
        if got is not None:
            text += f", got {got}"
        if hint:
            text += f" ({hint})"
        super().__init__(text)

    def problem(self, file: Path | str, family_path: str) -> Problem:
        """This error at `family_path` (e.g. "profiles.final.image") of `file`."""
        return Problem(file, f"{family_path}.{self.option}", self.expected, self.got, self.hint)


def unknown_option(engine: str, name: str, known: Iterable[str]) -> OptionError:
    """The error for an option `engine` does not take: the closest known name, and all of them."""
    names = sorted(known)
    close = difflib.get_close_matches(name, names, n=1, cutoff=0.6)
    listing = f"known options: {', '.join(names)}" if names else f"engine {engine!r} takes no options"
    return OptionError(engine, name, f"an option of engine {engine!r}",
                       hint=f"did you mean {close[0]!r}? {listing}" if close else listing)


class EngineError(FanrenError):
    """An engine could not do its work: missing tool, missing weights, a server that did not answer."""


class CacheCorrupt(FanrenError):
    """A cached object changed under a running build (truncated, removed). Exit code 1; rebuilt next time."""


@dataclass
class NodeFailure:
    node_id: str
    message: str
    log: Path | None


class BuildFailed(FanrenError):
    """One or more nodes failed. Exit code 1."""

    exit_code = 1

    def __init__(self, failures: list[NodeFailure]) -> None:
        self.failures = failures
        super().__init__(self.show())

    def show(self) -> str:
        lines = [f"error: {len(self.failures)} node(s) failed"]
        for f in self.failures:
            lines.append(f"  {f.node_id}: {f.message}")
            if f.log is not None:
                lines.append(f"    log: {f.log}")
        return "\n".join(lines)
