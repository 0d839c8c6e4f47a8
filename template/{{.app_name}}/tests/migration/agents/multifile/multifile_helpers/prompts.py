"""System prompts, read from a data file next to this module."""

from pathlib import Path

PERSONAS = Path(__file__).with_name("personas.txt")


def system_prompt(persona: str) -> str:
    for line in PERSONAS.read_text(encoding="utf-8").splitlines():
        name, _, prompt = line.partition(": ")
        if name == persona:
            return prompt
    raise KeyError(f"no persona {persona!r} in {PERSONAS}")
