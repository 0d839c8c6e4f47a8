"""In-place edits of a .env file that keep everything else as the user wrote it.

Values are read with python-dotenv's own parser, so they mean here what they mean to
`load_dotenv` in start_server.py. An update rewrites only the line of that key, keeping its
`export ` prefix and inline comment; a key without a line of its own takes the place of a
commented-out `# KEY=...` line when there is one (as in .env.example), or goes at the end.
Comments, blank lines, order and the other keys are untouched, and a file whose content does
not change is not written at all.
"""

from __future__ import annotations

import io
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

from dotenv.parser import Binding, parse_stream

# A value written without quotes; anything else is double-quoted.
_PLAIN_VALUE = re.compile(r"[A-Za-z0-9_./:@+,=-]*")
# One `KEY=value  # comment` line: the parts to keep when only the value changes.
_ASSIGNMENT = re.compile(
    r"(?P<export>export\s+)?(?P<key>[A-Za-z_][A-Za-z0-9_.]*)\s*=\s*"
    r"(?P<value>'[^'\n]*'|\"(?:\\.|[^\"\\\n])*\"|[^#\n]*?)"
    r"(?P<comment>[ \t]+#[^\n]*)?(?P<eol>\r?\n)?"
)


def _commented_assignment(key: str) -> re.Pattern[str]:
    return re.compile(rf"[ \t]*#[ \t]*(?:export[ \t]+)?{re.escape(key)}[ \t]*=[^\n]*(?P<eol>\n)?")


def format_value(value: str) -> str:
    if _PLAIN_VALUE.fullmatch(value):
        return value
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


@dataclass
class _Entry:
    text: str  # the exact text of this entry in the file
    key: str | None  # None for comments, blank lines and lines dotenv cannot parse
    value: str | None


def _split(binding: Binding) -> tuple[str, str]:
    """A binding's text, split into the blank lines before it and the entry itself."""
    text = binding.original.string
    body = text.lstrip("\r\n")
    return text[: len(text) - len(body)], body


class EnvFile:
    """A .env file held in memory: read, update keys, then `save()`."""

    def __init__(self, path: Path, text: str, *, exists: bool) -> None:
        self.path = path
        self.exists = exists
        self._original = text
        self._entries: list[_Entry] = []
        for binding in parse_stream(io.StringIO(text)):
            blank, body = _split(binding)
            if blank:
                self._entries.append(_Entry(blank, None, None))
            self._entries.append(_Entry(body, binding.key, binding.value))

    @classmethod
    def load(cls, path: Path, template: Path | None = None) -> EnvFile:
        """The file at `path`; when it does not exist, a new one starting as `template`."""
        if path.exists():
            return cls(path, path.read_text(encoding="utf-8"), exists=True)
        text = template.read_text(encoding="utf-8") if template and template.exists() else ""
        return cls(path, text, exists=False)

    @property
    def text(self) -> str:
        return "".join(entry.text for entry in self._entries)

    @property
    def changed(self) -> bool:
        return not self.exists or self.text != self._original

    def get(self, key: str) -> str | None:
        """The value `load_dotenv` would read for `key` (the last assignment wins), or None."""
        values = [e.value for e in self._entries if e.key == key]
        return values[-1] if values else None

    def set(self, key: str, value: str) -> None:
        line = f"{key}={format_value(value)}"
        active = [e for e in self._entries if e.key == key]
        if active:
            entry = active[-1]  # the one load_dotenv uses
            if entry.value != value:
                entry.text = _replace_value(entry.text, line)
                entry.value = value
            return
        commented = _commented_assignment(key)
        for entry in self._entries:
            match = commented.fullmatch(entry.text) if entry.key is None else None
            if match:
                entry.text = line + (match["eol"] or "")
                entry.key, entry.value = key, value
                return
        if self._entries and not self._entries[-1].text.endswith("\n"):
            self._entries[-1].text += "\n"
        self._entries.append(_Entry(line + "\n", key, value))

    def comment_out(self, key: str, reason: str) -> None:
        """Turn every assignment of `key` into a comment, so the value is kept for reference."""
        for entry in self._entries:
            if entry.key == key:
                eol = "\n" if entry.text.endswith("\n") else ""
                entry.text = f"# {entry.text.rstrip()}  ({reason})" + eol
                entry.key = entry.value = None

    def save(self) -> bool:
        """Write the file if its content changed (new files are private to the user)."""
        if not self.changed:
            return False
        self.path.parent.mkdir(parents=True, exist_ok=True)
        mode = self.path.stat().st_mode & 0o777 if self.exists else 0o600
        handle, temporary = tempfile.mkstemp(dir=self.path.parent, prefix=".env.", text=True)
        try:
            with os.fdopen(handle, "w", encoding="utf-8", newline="") as out:
                out.write(self.text)
            os.chmod(temporary, mode)
            os.replace(temporary, self.path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
        self._original, self.exists = self.text, True
        return True


def _replace_value(text: str, line: str) -> str:
    """`text` (one assignment) with `line` in its place, keeping `export ` and the comment."""
    match = _ASSIGNMENT.fullmatch(text)
    if match is None:  # a value spanning lines: replace the whole assignment
        return line + ("\n" if text.endswith("\n") else "")
    return (match["export"] or "") + line + (match["comment"] or "") + (match["eol"] or "")
