"""Model references as users type them: ``NAME``, ``NAME:3`` (version), ``NAME@alias``."""

from __future__ import annotations

from dataclasses import dataclass

LATEST = "latest"


@dataclass(frozen=True)
class ModelRef:
    """A model name and, optionally, a version number or an alias (``None``: latest)."""

    name: str
    version: int | str | None = None

    @classmethod
    def parse(cls, text: str) -> ModelRef:
        """Parse ``NAME``, ``NAME:VERSION`` or ``NAME@ALIAS``; ``ValueError`` if malformed."""
        text = text.strip()
        name, sep, rest = _split(text)
        if not name:
            raise ValueError(f"'{text}' has no model name; use NAME, NAME:VERSION or NAME@ALIAS")
        if not sep:
            return cls(name)
        if not rest:
            raise ValueError(f"'{text}' ends with '{sep}'; give a version number or an alias")
        if sep == "@":
            return cls(name, rest)
        if rest == LATEST:
            return cls(name, LATEST)
        if not rest.isdigit() or int(rest) < 1:
            raise ValueError(
                f"version '{rest}' in '{text}' is not a number >= 1; use NAME@ALIAS for aliases"
            )
        return cls(name, int(rest))

    @property
    def is_alias(self) -> bool:
        return isinstance(self.version, str) and self.version != LATEST

    def __str__(self) -> str:
        if self.version is None:
            return self.name
        if isinstance(self.version, int) or self.version == LATEST:
            return f"{self.name}:{self.version}"
        return f"{self.name}@{self.version}"


def _split(text: str) -> tuple[str, str, str]:
    colon, at = text.find(":"), text.find("@")
    positions = [p for p in (colon, at) if p >= 0]
    if not positions:
        return text, "", ""
    cut = min(positions)
    rest = text[cut + 1 :]
    if ":" in rest or "@" in rest:
        raise ValueError(f"'{text}' has more than one ':' or '@'; use NAME:VERSION or NAME@ALIAS")
    return text[:cut], text[cut], rest
