"""The README and .env.example document every setting the code reads."""

from __future__ import annotations

from pathlib import Path

from app.config import SETTINGS

ROOT = Path(__file__).resolve().parents[2]


def test_every_setting_is_in_the_readme_and_env_example() -> None:
    readme = (ROOT / "README.md").read_text()
    example = (ROOT / ".env.example").read_text()
    missing = [s.name for s in SETTINGS if f"`{s.name}`" not in readme or f"\n{s.name}=" not in example]
    assert missing == []


def test_readme_starts_with_the_two_commands() -> None:
    head = (ROOT / "README.md").read_text()[:1200]
    assert "make run" in head and "make test" in head
