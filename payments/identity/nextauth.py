"""NextAuth session tokens as NextAuth issues them (API.md, "NextAuth session tokens").

NextAuth does not sign its session token, it encrypts it: a compact JWE with `alg: dir`
(the key is used as it is) and a key derived from the app's secret with HKDF-SHA256.

- NextAuth v4 (next-auth/jwt `encode`): `enc: A256GCM`, a 32-byte key, empty salt, info
  "NextAuth.js Generated Encryption Key".
- Auth.js v5 (@auth/core/jwt `encode`): `enc: A256CBC-HS512`, a 64-byte key, the session
  cookie's name as salt ("authjs.session-token", "__Secure-authjs.session-token" over
  HTTPS), info "Auth.js Generated Encryption Key (<salt>)", and the key's RFC 7638
  thumbprint as `kid`. Its `decode` also takes `enc: A256GCM` with a 32-byte key derived
  the same way; so does this module, to accept exactly what Auth.js itself accepts.

Both check `exp` with 15 seconds of clock tolerance; so does this module. Decryption is
joserfc's (AEAD: a tampered header, key or ciphertext fails its tag); only the algorithms
above are allowed, so a token naming any other `alg` or `enc` (`none` included) is refused
before any key is tried. HKDF is cryptography's.
"""

import base64
import binascii
import functools
import json

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from joserfc import jwt
from joserfc.errors import ExpiredTokenError, JoseError
from joserfc.jwe import JWERegistry
from joserfc.jwk import OctKey

V4_INFO = "NextAuth.js Generated Encryption Key"
V5_SALTS = ("authjs.session-token", "__Secure-authjs.session-token")
CLOCK_TOLERANCE = 15  # seconds, as next-auth and @auth/core decode with

_KEY_LENGTHS = {"A256GCM": 32, "A256CBC-HS512": 64}


class InvalidSessionToken(Exception):
    """Not a NextAuth session token this secret encrypted, or not a valid one."""


class ExpiredSessionToken(InvalidSessionToken):
    pass


def v5_info(salt: str) -> str:
    return f"Auth.js Generated Encryption Key ({salt})"


@functools.lru_cache(maxsize=32)
def derive_key(secret: str, *, salt: str, info: str, length: int) -> bytes:
    """HKDF-SHA256 of the secret, as @panva/hkdf does it for NextAuth (an empty salt is
    HMAC's all-zero key, as RFC 5869 says)."""
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=salt.encode(), info=info.encode()).derive(
        secret.encode()
    )


def candidate_keys(secret: str, enc: str) -> list[tuple[str, bytes]]:
    """The keys NextAuth could have encrypted a token with this `enc` under, each named by
    the flavour it belongs to."""
    keys = []
    if enc == "A256GCM":
        keys.append(("v4", derive_key(secret, salt="", info=V4_INFO, length=32)))
    for salt in V5_SALTS:
        keys.append((f"v5 ({salt})", derive_key(secret, salt=salt, info=v5_info(salt), length=_KEY_LENGTHS[enc])))
    return keys


def looks_like_session_token(token: str) -> bool:
    """Five dot-separated parts: a compact JWE, not a JWS (three) nor an API key."""
    return token.count(".") == 4


def _protected_header(token: str) -> dict:
    segment = token.split(".", 1)[0]
    try:
        header = json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise InvalidSessionToken("The token's header is not base64url JSON.")
    if not isinstance(header, dict):
        raise InvalidSessionToken("The token's header is not a JSON object.")
    return header


def session_token_decode(token: str, *, secret: str) -> dict:
    """The claims of a NextAuth v4 or Auth.js v5 session token encrypted with `secret`.

    Raises ExpiredSessionToken past `exp` (with CLOCK_TOLERANCE), InvalidSessionToken for
    anything else: another algorithm, a key this secret does not derive (another secret,
    another salt), a tampered token, or no `exp` or `sub`."""
    if not secret:
        raise InvalidSessionToken("No NextAuth secret is configured.")
    header = _protected_header(token)
    enc = header.get("enc")
    if header.get("alg") != "dir" or enc not in _KEY_LENGTHS:
        raise InvalidSessionToken("Not a NextAuth session token: it must be alg dir with A256GCM or A256CBC-HS512.")
    registry = JWERegistry(algorithms=["dir", enc])
    for _flavour, key in candidate_keys(secret, enc):
        try:
            claims = jwt.decode(token, OctKey.import_key(key), registry=registry).claims
        except (JoseError, ValueError, TypeError):
            continue  # not this key: a wrong key fails the authentication tag
        break
    else:
        raise InvalidSessionToken("The token was not encrypted with this NEXTAUTH_SECRET, or was altered.")
    claims_registry = jwt.JWTClaimsRegistry(leeway=CLOCK_TOLERANCE, exp={"essential": True}, sub={"essential": True})
    try:
        claims_registry.validate(claims)
    except ExpiredTokenError:
        raise ExpiredSessionToken("The token has expired.")
    except JoseError as exc:
        raise InvalidSessionToken(f"Invalid token claims: {exc}")
    if not claims["sub"]:
        raise InvalidSessionToken("The token has an empty sub.")
    return claims
