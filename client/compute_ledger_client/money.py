"""Money is an ``int`` of wei (an ERC-20's smallest unit) everywhere in this client: the bridge's decimal
strings become ints, and nothing is ever a float. These helpers turn wei into ETH for people, and back."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

WEI_PER_ETH = 10**18
Wei = int


def format_eth(wei: int, places: int = 6, *, unit: str = "ETH", decimals: int = 18) -> str:
    """``1234500000000000000`` → ``"1.2345 ETH"``: exact (no float), at most ``places`` decimal places
    (rounded half up, trailing zeros dropped; a non-zero amount below the last place reads ``<0.000001 ETH``). ``decimals``/``unit`` for an ERC-20 (``decimals=6, unit="USDC"``)."""
    if not isinstance(wei, int) or isinstance(wei, bool):
        raise TypeError(f"wei must be an int, not {type(wei).__name__}")
    sign = "-" if wei < 0 else ""
    scale = 10**decimals
    step = 10 ** max(decimals - places, 0)
    rounded = (abs(wei) + step // 2) // step * step if places < decimals else abs(wei)
    if rounded == 0 and wei != 0:  # never show a non-zero amount as 0
        return f"{sign}<{Decimal(1).scaleb(-min(places, decimals))} {unit}".rstrip()
    whole, frac = divmod(rounded, scale)
    digits = str(frac).rjust(decimals, "0")[: min(places, decimals)].rstrip("0")
    text = f"{whole:,}" + (f".{digits}" if digits else "")
    return f"{sign}{text} {unit}".rstrip()


def parse_eth(amount: str | int | Decimal, *, decimals: int = 18) -> int:
    """``"0.25"`` (ETH) → ``250000000000000000`` wei, exactly; refuses more precision than wei, and floats
    (``0.1`` is not 0.1 in binary: pass a string)."""
    if isinstance(amount, float):
        raise TypeError("pass ETH as a string or Decimal, not a float (floats lose wei)")
    try:
        value = Decimal(str(amount).replace("_", "").replace(",", "").strip())
    except InvalidOperation as e:
        raise ValueError(f"not an amount: {amount!r}") from e
    wei = value * (10**decimals)
    if wei != wei.to_integral_value():
        raise ValueError(f"{amount} has more than {decimals} decimal places")
    return int(wei)


def eth(amount: str | int | Decimal) -> int:
    """Shorthand of :func:`parse_eth`: ``eth("0.01")`` is 0.01 ETH in wei."""
    return parse_eth(amount)
