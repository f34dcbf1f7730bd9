"""`fanren split`: a novel chapter becomes a drama.toml that builds, losing no text; a whole novel
becomes a series (series.toml and an episode folder per chapter: see `book`).

Two engines turn a chapter into a Story: `rules` (offline, deterministic) and `openai` (any
OpenAI-compatible chat endpoint). Either way the Story is rendered as a commented drama.toml,
validated with the project's own schema, and checked to speak exactly the chapter's text.
The click command is `fanren.split.command.split_command`; it is imported from there, not here,
so using the library does not import click's command machinery.
"""

from .book import WrittenSeries
from .chapter import SplitSettings, split_chapter, split_novel, split_text
from .chat import ChatClient, ChatEndpoint
from .coverage import TextLost, check_no_text_lost
from .source import decode_chapter, detect_language, read_chapter
from .story import Story
from .writer import Written

__all__ = ["ChatClient", "ChatEndpoint", "SplitSettings", "Story", "TextLost", "Written", "WrittenSeries",
           "check_no_text_lost", "decode_chapter", "detect_language", "read_chapter", "split_chapter",
           "split_novel", "split_text"]
