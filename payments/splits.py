"""Split instructions: who gets what of an amount, in minor units or basis points.

[{"destination": "<recipient>", "amount": 300}, {"destination": "<recipient>", "bps": 1500}]

Allocation is exact and deterministic: fixed amounts as given; basis-point parts share
floor(amount × total bps / 10000) pro rata, each floored, and the cents lost to flooring
go one by one to the first bps parts. What is not allocated stays with the merchant.
"""

from config.errors import InvalidRequest

MAX_PARTS = 50
MAX_DESTINATION = 100  # the recipient's ledger account is named after it


def splits_validate(*, instructions, amount: int, param: str = "split_instructions") -> list[dict]:
    """Check the shape and that the parts fit in `amount`; return normalised instructions.
    Raises InvalidRequest naming the offending item (e.g. split_instructions[1].bps)."""
    if instructions in (None, []):
        return []
    if not isinstance(instructions, list) or len(instructions) > MAX_PARTS:
        raise InvalidRequest(f"Must be a list of at most {MAX_PARTS} items.", param=param)
    clean, total_bps, total_fixed, seen = [], 0, 0, set()
    for i, item in enumerate(instructions):
        where = f"{param}[{i}]"
        if not isinstance(item, dict):
            raise InvalidRequest("Each split is an object.", param=where)
        destination = item.get("destination")
        if not isinstance(destination, str) or not destination.strip() or len(destination.strip()) > MAX_DESTINATION:
            raise InvalidRequest(
                f"destination must be a non-empty string of at most {MAX_DESTINATION} characters.",
                param=f"{where}.destination",
            )
        destination = destination.strip()
        if destination in seen:  # one recipient, one part: two legs on one account cannot be booked
            raise InvalidRequest(f"destination {destination!r} appears twice.", param=f"{where}.destination")
        seen.add(destination)
        has_amount, has_bps = "amount" in item, "bps" in item
        if has_amount == has_bps:
            raise InvalidRequest("Give exactly one of amount or bps.", param=where)
        key = "amount" if has_amount else "bps"
        value = item[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise InvalidRequest(f"{key} must be a positive integer.", param=f"{where}.{key}")
        if key == "bps":
            if value > 10_000:
                raise InvalidRequest("bps must be at most 10000.", param=f"{where}.bps")
            total_bps += value
        else:
            total_fixed += value
        clean.append({"destination": destination, key: value})
    if total_bps > 10_000:
        raise InvalidRequest("The basis points add up to more than 10000.", param=param)
    if total_fixed + amount * total_bps // 10_000 > amount:
        raise InvalidRequest(f"The splits add up to more than the amount ({amount}).", param=param)
    return clean


def splits_allocate(*, instructions: list[dict], amount: int) -> list[tuple[str, int]]:
    """[(destination, minor units)] for validated instructions; sums to at most `amount`."""
    bps_parts = [i for i in instructions if "bps" in i]
    total_bps = sum(i["bps"] for i in bps_parts)
    bps_pool = amount * total_bps // 10_000
    bps_shares = [amount * i["bps"] // 10_000 for i in bps_parts]
    for k in range(bps_pool - sum(bps_shares)):  # the cents lost to flooring, to the first parts
        bps_shares[k % len(bps_shares)] += 1
    shares = iter(bps_shares)
    return [(i["destination"], i["amount"] if "amount" in i else next(shares)) for i in instructions]
