"""Bundled sample photos (see NOTICE.md for their authors and licences)."""

from __future__ import annotations

from importlib import resources

SAMPLES: dict[str, tuple[str, str]] = {
    "chelsea": ("Cat (Chelsea)", "chelsea.png"),
    "coffee": ("Coffee cup", "coffee.png"),
    "astronaut": ("Astronaut (Eileen Collins)", "astronaut.png"),
    "rocket": ("Rocket launch", "rocket.jpg"),
}
"""Sample key -> (display name, file name). The cat comes first: it is the default,
as in the blog post this project grew from."""

DEFAULT_SAMPLE = "chelsea"


def read_sample(key: str) -> bytes:
    """The bytes of the bundled sample ``key``.

    Raises:
        KeyError: unknown sample.
    """
    if key not in SAMPLES:
        raise KeyError(f"unknown sample {key!r}; known: {', '.join(SAMPLES)}")
    return resources.files(__name__).joinpath(SAMPLES[key][1]).read_bytes()
