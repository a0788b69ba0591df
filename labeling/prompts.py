"""Prompt files (under prompts/) loaded as data, rendered, and fingerprinted for provenance."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from string import Template

# Found through the `prompts` package, so a wheel installed away from the source tree has them.
DEFAULT_PROMPTS_DIR = Path(str(files("prompts")))
RUBRIC_FILE = "rubric.txt"


@dataclass(frozen=True)
class PromptTemplate:
    name: str  # file name, e.g. "progress_score.v1.txt"
    text: str
    sha256: str

    def render(self, **values: object) -> str:
        """Fill `$placeholders`; a missing value is an error, never an empty string."""
        return Template(self.text).substitute({k: str(v) for k, v in values.items()}).strip()


class PromptLibrary:
    """The prompt files of one directory, plus the shared rubric."""

    def __init__(self, directory: str | Path = DEFAULT_PROMPTS_DIR):
        self.directory = Path(directory)
        if not self.directory.is_dir():
            raise FileNotFoundError(f"prompts directory not found: {self.directory}")
        self._loaded: dict[str, PromptTemplate] = {}  # each file read once per run
        self.rubric = self._read(RUBRIC_FILE).text.strip()
        self.rubric_lines = {int(line[0]): line[4:].strip() for line in self.rubric.splitlines() if line[:1].isdigit()}

    def get(self, name: str) -> PromptTemplate:
        return self._read(name)

    def _read(self, name: str) -> PromptTemplate:
        if name in self._loaded:
            return self._loaded[name]
        path = self.directory / name
        if not path.is_file():
            raise FileNotFoundError(f"prompt file not found: {path}")
        text = path.read_text()
        template = PromptTemplate(name=name, text=text, sha256=hashlib.sha256(text.encode()).hexdigest())
        self._loaded[name] = template
        return template

    def fingerprints(self) -> dict[str, str]:
        """SHA-256 of every prompt file, for the run's provenance."""
        return {p.name: self._read(p.name).sha256 for p in sorted(self.directory.glob("*.txt"))}
