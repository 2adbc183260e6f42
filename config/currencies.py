"""ISO 4217 currencies and their minor-unit exponents.

Exponents follow Stripe where Stripe differs from ISO: Stripe treats these as
zero-decimal (amount 100 = ¥100): BIF CLP DJF GNF JPY KMF KRW MGA PYG RWF UGX VND VUV
XAF XOF XPF; and these as three-decimal: BHD JOD KWD OMR TND.
"""

ZERO_DECIMAL = frozenset("BIF CLP DJF GNF JPY KMF KRW MGA PYG RWF UGX VND VUV XAF XOF XPF".split())
THREE_DECIMAL = frozenset("BHD JOD KWD OMR TND".split())

# Active ISO 4217 codes (2024 list), excluding funds codes, precious metals and test codes.
ISO_4217 = frozenset(
    """
    AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BHD BIF BMD BND BOB BRL BSD BTN
    BWP BYN BZD CAD CDF CHF CLP CNY COP CRC CUP CVE CZK DJF DKK DOP DZD EGP ERN ETB EUR FJD
    FKP GBP GEL GHS GIP GMD GNF GTQ GYD HKD HNL HTG HUF IDR ILS INR IQD IRR ISK JMD JOD JPY
    KES KGS KHR KMF KPW KRW KWD KYD KZT LAK LBP LKR LRD LSL LYD MAD MDL MGA MKD MMK MNT MOP
    MRU MUR MVR MWK MXN MYR MZN NAD NGN NIO NOK NPR NZD OMR PAB PEN PGK PHP PKR PLN PYG QAR
    RON RSD RUB RWF SAR SBD SCR SDG SEK SGD SHP SLE SOS SRD SSP STN SVC SYP SZL THB TJS TMT
    TND TOP TRY TTD TWD TZS UAH UGX USD UYU UZS VES VND VUV WST XAF XCD XCG XOF XPF YER ZAR
    ZMW ZWG
    """.split()
)

# A sane ceiling for one amount in minor units: 10^12 (ten billion dollars in cents).
MAX_AMOUNT = 10**12


def is_valid_currency(code: str) -> bool:
    return isinstance(code, str) and code.upper() in ISO_4217


def exponent(code: str) -> int:
    code = code.upper()
    if code in ZERO_DECIMAL:
        return 0
    if code in THREE_DECIMAL:
        return 3
    return 2
