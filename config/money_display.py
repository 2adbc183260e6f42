"""Money shown to people: `money(2599, "usd")` -> "$25.99", `money(2599, "jpy")` -> "¥2599".

The one formatting helper for the admin, pages and messages (STYLE.md: "Money shown to
people is formatted"). Minor units stay the truth everywhere else; this never does
arithmetic a caller could reuse, and no float is involved: the major/minor split is
integer division by 10**exponent, with exponents from config.currencies (Stripe's
zero-decimal and three-decimal lists).

Symbols are the unambiguous English ones (CLDR "en"): "$" is USD only, Canada's dollar is
"CA$", China's yuan "CN¥". A currency without such a symbol reads "CHF 25.99" (code and
a no-break space). Digits are grouped by thousands from five digits up ("¥2599",
"¥12,599", "$1234.56", "$12,345.67"): the ISO 80000 habit of leaving four-digit
numbers ungrouped, which keeps the common amounts short in a list column.
"""

from config.currencies import exponent

NBSP = "\u00a0"

SYMBOLS = {
    "USD": "$",
    "EUR": "€",
    "GBP": "£",
    "JPY": "¥",
    "CNY": "CN¥",
    "KRW": "₩",
    "INR": "₹",
    "ILS": "₪",
    "VND": "₫",
    "PHP": "₱",
    "CAD": "CA$",
    "AUD": "A$",
    "NZD": "NZ$",
    "HKD": "HK$",
    "MXN": "MX$",
    "BRL": "R$",
    "TWD": "NT$",
    "XCD": "EC$",
}

# Ledger accounts of prepaid credits carry this "currency": whole units, not money.
CREDITS = "credits"


def _group(digits: str) -> str:
    if len(digits) < 5:
        return digits
    head = len(digits) % 3 or 3
    return ",".join([digits[:head], *(digits[i : i + 3] for i in range(head, len(digits), 3))])


def major_units(amount: int, currency: str) -> str:
    """The amount in major units as an exact decimal string, no symbol, no grouping:
    2599 usd -> "25.99", 2599 jpy -> "2599", -5 kwd -> "-0.005". For CSV and inputs."""
    if currency.lower() == CREDITS:
        return str(amount)
    exp = exponent(currency)
    sign = "-" if amount < 0 else ""
    whole, frac = divmod(abs(int(amount)), 10**exp)
    return f"{sign}{whole}.{frac:0{exp}d}" if exp else f"{sign}{whole}"


def money(amount: int | None, currency: str | None) -> str:
    """Human display of `amount` minor units of `currency`: "$25.99", "¥2599",
    "-€1.50", "CHF 25.99", "BHD 1.500", "1200 credits". "" for a missing amount."""
    if amount is None:
        return ""
    currency = (currency or "").strip()
    if currency.lower() == CREDITS:
        sign = "-" if amount < 0 else ""
        return f"{sign}{_group(str(abs(amount)))} credits"
    code = currency.upper()
    number = major_units(amount, code)
    sign, number = ("-", number[1:]) if number.startswith("-") else ("", number)
    whole, dot, frac = number.partition(".")
    number = _group(whole) + dot + frac
    symbol = SYMBOLS.get(code)
    if symbol:
        return f"{sign}{symbol}{number}"
    return f"{sign}{code}{NBSP}{number}" if code else f"{sign}{number}"
