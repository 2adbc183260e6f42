"""Mint NextAuth session tokens the way NextAuth does, for tests and for trying the API.

The same parameters as next-auth 4.24's `next-auth/jwt` `encode` (v4) and @auth/core
0.41's `jwt` `encode` (Auth.js v5): `alg: dir`, the key HKDF-SHA256-derived from the
secret, `iat`, `exp` = now + max_age, a random `jti`, and for v5 the key's RFC 7638
thumbprint (SHA-512) as `kid`. Tokens minted by the real packages are in
fixtures/nextauth_tokens.json (fixtures/nextauth_mint.mjs says how).

    python -m payments.tests.nextauth_tokens --secret "$NEXTAUTH_SECRET" --sub user-42 \\
        [--v5 [--salt __Secure-authjs.session-token]] [--email a@example.com] [--name Ada]
"""

import argparse
import base64
import json
import time
import uuid
from pathlib import Path

from joserfc import jwk, jwt
from joserfc.jwe import JWERegistry
from joserfc.jwk import OctKey

from payments.identity.nextauth import V4_INFO, derive_key, v5_info

DEFAULT_MAX_AGE = 30 * 24 * 60 * 60  # NextAuth's default session maxAge
REAL_TOKENS = json.loads((Path(__file__).parent / "fixtures" / "nextauth_tokens.json").read_text())


def _claims(claims: dict, max_age: int | None) -> dict:
    now = int(time.time())
    out = {**claims, "iat": now, "jti": str(uuid.uuid4())}
    if max_age is not None:
        out["exp"] = now + max_age
    return out


def _encrypt(header: dict, claims: dict, key: bytes) -> str:
    registry = JWERegistry(algorithms=[header["alg"], header["enc"]])
    return jwt.encode(header, claims, OctKey.import_key(key), registry=registry, default_type=None)


def mint_v4(claims: dict, *, secret: str, max_age: int | None = DEFAULT_MAX_AGE) -> str:
    """NextAuth v4's session token: A256GCM, 32-byte key, empty salt."""
    key = derive_key(secret, salt="", info=V4_INFO, length=32)
    return _encrypt({"alg": "dir", "enc": "A256GCM"}, _claims(claims, max_age), key)


def mint_v5(
    claims: dict,
    *,
    secret: str,
    salt: str = "authjs.session-token",
    max_age: int | None = DEFAULT_MAX_AGE,
    enc: str = "A256CBC-HS512",
) -> str:
    """Auth.js v5's session token: A256CBC-HS512, 64-byte key, the cookie name as salt."""
    key = derive_key(secret, salt=salt, info=v5_info(salt), length=64 if enc == "A256CBC-HS512" else 32)
    kid = jwk.thumbprint(
        {"kty": "oct", "k": base64.urlsafe_b64encode(key).rstrip(b"=").decode()},
        "sha512" if len(key) == 64 else "sha256",
    )
    return _encrypt({"alg": "dir", "enc": enc, "kid": kid}, _claims(claims, max_age), key)


def main() -> None:
    parser = argparse.ArgumentParser(description="Mint a NextAuth session token (v4 by default).")
    parser.add_argument("--secret", required=True, help="the NextAuth app's NEXTAUTH_SECRET")
    parser.add_argument("--sub", required=True, help="the user id: the customer's external_id in Paydesk")
    parser.add_argument("--email", default="")
    parser.add_argument("--name", default="")
    parser.add_argument("--v5", action="store_true", help="Auth.js v5's format instead of NextAuth v4's")
    parser.add_argument("--salt", default="authjs.session-token", help="v5: the session cookie's name")
    parser.add_argument("--max-age", type=int, default=DEFAULT_MAX_AGE)
    args = parser.parse_args()
    claims = {
        "sub": args.sub,
        **({"email": args.email} if args.email else {}),
        **({"name": args.name} if args.name else {}),
    }
    if args.v5:
        print(mint_v5(claims, secret=args.secret, salt=args.salt, max_age=args.max_age))
    else:
        print(mint_v4(claims, secret=args.secret, max_age=args.max_age))


if __name__ == "__main__":
    main()
