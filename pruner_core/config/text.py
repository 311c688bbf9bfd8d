"""Text a person types (parsed) or reads (formatted), written once for the pages, the CLI and the report. No heavy
imports."""

from __future__ import annotations

from pruner_core.errors import SpecError


def parse_fractions(text: str, option: str = "ratios") -> list[float]:
    """``"0.1, 0.2; 0.5"`` -> ``[0.1, 0.2, 0.5]`` (commas or semicolons; blanks skipped). The range is checked by
    whoever uses them.

    Raises:
        SpecError: naming ``option`` and the part that is not a number.

    >>> parse_fractions("0.1, 0.5;0.9")
    [0.1, 0.5, 0.9]
    """
    values = []
    for part in text.replace(";", ",").split(","):
        if not part.strip():
            continue
        try:
            values.append(float(part))
        except ValueError:
            raise SpecError(
                f"{option}: '{part.strip()[:40]}' is not a number; give fractions in [0, 1) separated by commas,"
                " e.g. 0.1, 0.5, 0.9"
            ) from None
    return values


def format_bytes(n: float, digits: int = 1) -> str:
    """Bytes in decimal units, as file managers show them: ``1.7 MB``, ``512 B``.

    >>> format_bytes(1_700_000), format_bytes(512), format_bytes(2048), format_bytes(1_234_567, 2)
    ('1.7 MB', '512 B', '2.0 kB', '1.23 MB')
    """
    if n < 1000:
        return f"{int(n)} B"
    for unit in ("kB", "MB", "GB", "TB"):
        n /= 1000
        if n < 1000 or unit == "TB":
            return f"{n:.{digits}f} {unit}"
    raise AssertionError("unreachable")


def format_duration(seconds: float) -> str:
    """``45 s``, ``12 min``, ``5.6 h``: a duration as people read it.

    >>> format_duration(45.2), format_duration(720), format_duration(20160)
    ('45 s', '12 min', '5.6 h')
    """
    if seconds < 90:
        return f"{seconds:,.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:,.0f} min"
    return f"{seconds / 3600:,.1f} h"
