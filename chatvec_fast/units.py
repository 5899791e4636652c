"""Byte sizes: parsing --max-shard-size and printing amounts (decimal units, as Hugging Face uses)."""

from __future__ import annotations

_UNITS = {
    "": 1,
    "B": 1,
    "KB": 10**3,
    "MB": 10**6,
    "GB": 10**9,
    "TB": 10**12,
    "KIB": 2**10,
    "MIB": 2**20,
    "GIB": 2**30,
    "TIB": 2**40,
}


def parse_size(text: str | int | None) -> int | None:
    """'5GB' -> 5_000_000_000, '2GiB' -> 2 * 2**30, 1000 -> 1000 (GB = 10^9, as in save_pretrained)."""
    if text is None:
        return None
    if isinstance(text, int) and not isinstance(text, bool):
        if text <= 0:
            raise ValueError(f"size {text}: expected a positive number of bytes")
        return text
    s = text.strip().upper()
    number = s.rstrip("KMGTIB")
    unit = s[len(number) :]
    try:
        value = float(number)
    except ValueError:
        value = -1.0
    # inf and nan read as floats; 2^63 bytes is past any disk (and int(inf) raises OverflowError).
    if unit not in _UNITS or not 0 < value * _UNITS.get(unit, 1) < 2**63:
        raise ValueError(
            f"cannot read size {text!r}: expected a positive number with a unit such as 5GB, 500MB or 2GiB"
        )
    return int(value * _UNITS[unit])


def format_bytes(n: float) -> str:
    """1234567 -> '1.23 MB'."""
    for unit, scale in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.2f} {unit}"
    return f"{int(n)} B"


def format_rate(bytes_per_second: float) -> str:
    """1.23 GB/s, 4.56 MB/s or 789 kB/s: three digits that say something at any speed (a slow disk at 3 MB/s
    is not '0.00 GB/s')."""
    for unit, scale in (("GB/s", 1e9), ("MB/s", 1e6), ("kB/s", 1e3)):
        if bytes_per_second >= scale:
            return f"{bytes_per_second / scale:.2f} {unit}"
    return f"{bytes_per_second:.0f} B/s"


def plural(count: int, noun: str) -> str:
    """'1 tensor', '2 tensors'."""
    return f"{count} {noun}{'' if count == 1 else 's'}"
