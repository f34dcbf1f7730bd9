"""fanren: `make` for AI short dramas.

drama.toml → Project → Graph → stale nodes → engines → cache → out/<profile>/episode.mp4
"""

from pathlib import Path

from .errors import BuildFailed, DramaError, EngineError, FanrenError, Problem, UsageError

__version__ = "0.1.0"

__all__ = ["BuildFailed", "DramaError", "EngineError", "FanrenError", "Problem", "UsageError", "__version__"]


def templates_dir() -> Path:
    """The folder of the packaged prompt templates."""
    from . import templates  # type: ignore[attr-defined]

    return Path(templates.__file__).parent
