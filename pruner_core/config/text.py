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


BYTE_UNITS = ("B", "kB", "MB", "GB", "TB")


def byte_unit(n: float) -> str:
    """The unit :func:`format_bytes` writes ``n`` bytes in: give it to several values to write them all in one.

    >>> byte_unit(512), byte_unit(836_890), byte_unit(1_690_000)
    ('B', 'kB', 'MB')
    """
    for unit in BYTE_UNITS[:-1]:
        if n < 1000:
            return unit
        n /= 1000
    return BYTE_UNITS[-1]


def format_bytes(n: float, digits: int = 1, unit: str | None = None) -> str:
    """Bytes in decimal units, as file managers show them: ``1.7 MB``, ``512 B``; in ``unit`` when given (a column
    written in one unit: ``0.84 MB`` beside ``1.69 MB``, not ``836.89 kB``).

    >>> format_bytes(1_700_000), format_bytes(512), format_bytes(2048), format_bytes(1_234_567, 2)
    ('1.7 MB', '512 B', '2.0 kB', '1.23 MB')
    >>> format_bytes(836_890, 2, unit="MB")
    '0.84 MB'
    """
    unit = unit or byte_unit(n)
    if unit == "B":
        return f"{int(n)} B"
    return f"{n / 1000 ** BYTE_UNITS.index(unit):.{digits}f} {unit}"


def format_times(original: float | None, this: float | None) -> str:
    """A change of cost as one convention writes it everywhere: ``N.NN×`` = original ÷ this, so above 1 is cheaper
    (fewer, smaller, faster) and below 1 dearer; "—" where either is missing or this is zero. Accuracy changes are
    percentage points instead (``+0.40 pp``).

    >>> format_times(4000, 1052), format_times(100, 100), format_times(100, 125), format_times(5, 0)
    ('3.80×', '1.00×', '0.80×', '—')
    """
    if not original or not this:
        return "—"
    return f"{original / this:.2f}×"


def options_help(options: dict[str, str]) -> str:
    """Each option with its description, one Markdown line each, for a picker's help (the box shows the name alone).

    >>> print(options_help({"l1": "L1 norm", "l2": "L2 norm"}))
    - **l1**: L1 norm
    - **l2**: L2 norm
    """
    return "\n".join(f"- **{name}**: {text}" for name, text in options.items())


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
