"""Money shown to people: `money(2599, "usd")` is "$25.99", `money(2599, "jpy")` is "¥2,599".

The one display helper for amounts (admin pages, the dashboard, emails). Amounts stay
integers in minor units everywhere else; this only turns one into text, using the
currency's exponent from config.currencies (zero- and three-decimal currencies included).
Currencies without a well-known symbol are shown with their code: "KES 1,000.00".
"""

from config.currencies import exponent

SYMBOLS = {
    "USD": "$",
    "EUR": "€",
    "GBP": "£",
    "JPY": "¥",
    "KRW": "₩",
    "INR": "₹",
    "BRL": "R$",
    "CNY": "CN¥",
    "CAD": "CA$",
    "AUD": "A$",
    "NZD": "NZ$",
    "MXN": "MX$",
    "HKD": "HK$",
    "ILS": "₪",
    "NGN": "₦",
    "PHP": "₱",
    "THB": "฿",
    "VND": "₫",
    "TRY": "₺",
    "UAH": "₴",
}


def money(amount: int | None, currency: str) -> str:
    """`amount` minor units of `currency` as people read it: "$1,234.56", "-€5.00", "¥2,599"."""
    if amount is None:
        return ""
    code = currency.upper()
    exp = exponent(code)
    whole, frac = divmod(abs(int(amount)), 10**exp)
    number = f"{whole:,}" + (f".{frac:0{exp}d}" if exp else "")
    sign = "-" if amount < 0 else ""
    symbol = SYMBOLS.get(code)
    return f"{sign}{symbol}{number}" if symbol else f"{sign}{code} {number}"
