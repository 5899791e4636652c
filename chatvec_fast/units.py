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
    if text is None or isinstance(text, int):
        return text
    s = text.strip().upper()
    number = s.rstrip("KMGTIB")
    unit = s[len(number) :]
    try:
        value = float(number)
    except ValueError:
        value = -1.0
    if unit not in _UNITS or value <= 0:
        raise ValueError(f"cannot read size {text!r}: expected a number with a unit such as 5GB, 500MB or 2GiB")
    return int(value * _UNITS[unit])


def format_bytes(n: float) -> str:
    """1234567 -> '1.23 MB'."""
    for unit, scale in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.2f} {unit}"
    return f"{int(n)} B"
