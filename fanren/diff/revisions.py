"""A drama folder as it was at a git revision: `git archive` of its folder into a temp directory.

Everything the compile reads lives in the drama folder (drama.toml, refs/, templates/, music, voice
prompts), so the folder's tracked files at a revision are the drama at that revision. A series is
read the same way from its root: series.toml, every episode folder, and the shared refs/,
templates/ and music. The working tree is the folder itself, untouched.
"""

from __future__ import annotations

import subprocess
import tarfile
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from ..errors import DramaError, EngineError, Problem, UsageError
from ..project import DRAMA_FILE
from ..series import SERIES_FILE


@dataclass(frozen=True)
class Repository:
    """The git repository holding a drama folder, and the folder's path inside it."""

    top: Path      # the work tree's top folder
    prefix: str    # the drama folder relative to it, "" or ending in "/"

    def git(self, *args: str) -> subprocess.CompletedProcess[bytes]:
        return _git(self.top, *args)

    def commit_of(self, revision: str) -> str:
        """The commit `revision` names, or bad input naming it."""
        found = self.git("rev-parse", "--verify", "--quiet", "--end-of-options", f"{revision}^{{commit}}")
        if found.returncode != 0:
            raise UsageError(f"unknown revision {revision!r} in the git repository {self.top} "
                             f"(the drama folder: {self.prefix or './'})")
        return found.stdout.decode().strip()

    def shown(self, revision: str | None, file: str = DRAMA_FILE) -> str:
        """How a side's file is named in messages: `HEAD:drama/drama.toml` or the working tree's file."""
        if revision is None:
            return str(self.top / self.prefix / file)
        return f"{revision}:{self.prefix}{file}"

    def has(self, commit: str, file: str) -> bool:
        """Whether the folder holds `file` in `commit`."""
        return self.git("cat-file", "-e", f"{commit}:{self.prefix}{file}").returncode == 0


def repository_of(folder: Path) -> Repository:
    """The repository `folder` is in; bad input when it is in none."""
    folder = Path(folder).absolute()
    if not folder.is_dir():
        raise UsageError(f"no folder {folder}")
    found = _git(folder, "rev-parse", "--show-toplevel", "--show-prefix")
    if found.returncode != 0:
        raise UsageError(f"{folder} is not in a git repository (fanren diff compares git revisions "
                         "of the drama folder)")
    top, prefix = (found.stdout.decode().splitlines() + ["", ""])[:2]
    return Repository(Path(top), prefix)


@contextmanager
def checkout(repository: Repository, revision: str, expected: str = DRAMA_FILE) -> Iterator[Path]:
    """The drama (or series) folder at `revision`, extracted into a temp folder that is removed
    afterwards. A folder holding neither drama.toml nor series.toml there is bad input naming
    `expected`, the file the folder holds in the working tree."""
    commit = repository.commit_of(revision)
    if not (repository.has(commit, DRAMA_FILE) or repository.has(commit, SERIES_FILE)):
        raise DramaError(Problem(repository.shown(revision, expected), "",
                                 f"a {expected} at revision {revision}",
                                 f"no such file in commit {commit[:12]}",
                                 hint="the drama folder is not in that commit; name another revision"))
    with tempfile.TemporaryDirectory(prefix="fanren-diff-") as temp:
        # streamed: a drama's music and references need not fit in memory twice
        with subprocess.Popen(["git", "archive", "--format=tar", commit, "--", repository.prefix or "."],
                              cwd=repository.top, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as git:
            assert git.stdout is not None and git.stderr is not None
            unreadable: tarfile.TarError | None = None
            try:
                with tarfile.open(fileobj=git.stdout, mode="r|") as tar:
                    tar.extractall(temp, filter="data")  # no links or paths out of the temp folder
            except tarfile.TarError as exc:
                unreadable = exc
            message = git.stderr.read().decode(errors="replace").strip()
        if git.returncode != 0 or unreadable is not None:
            raise EngineError(f"git archive {revision} failed: {message or unreadable}")
        yield Path(temp) / repository.prefix


def _git(cwd: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    try:
        return subprocess.run(["git", *args], cwd=cwd, capture_output=True, timeout=120, check=False)
    except FileNotFoundError:
        raise EngineError("git is not installed (fanren diff reads revisions with git)") from None
