"""Weak Ed25519 public keys: the few points no signature check may rely on.

An Ed25519 public key is a point A of the curve edwards25519, and a
signature (R, S) of a message M is valid when S*B = R + k*A, with
k = SHA-512(R, A, M) (RFC 8032, section 5.1.7). If A has *small order*
(8*A is the identity, the curve's neutral point), then k*A takes at most
eight values whatever M is, and for A = identity it is always the identity:
R = identity, S = 0 then "verifies" every message, with no private key at
all. OpenSSL (under the `cryptography` package) checks none of this when it
reads a key, so minildr does, wherever a key enters a trust store
(TrustStore.add_key, TrustStore.load, signature files), as libsodium's
crypto_sign_verify does (its ge25519_has_small_order).

The arithmetic is the curve's own, in plain integers (RFC 8032 section 5.1.3
for decoding, 5.1.4 for adding points): a few dozen multiplications per key,
done once when the key is read.
"""
from __future__ import annotations

from typing import Optional, Tuple

P = 2 ** 255 - 19                                  # the field's prime
D = -121665 * pow(121666, P - 2, P) % P            # the curve constant d
SQRT_M1 = pow(2, (P - 1) // 4, P)                  # a square root of -1

Point = Tuple[int, int]                            # (x, y), affine
IDENTITY: Point = (0, 1)


def decode(raw: bytes) -> Optional[Point]:
    """The point a 32-byte encoding names, or None if it names none canonically (5.1.3)."""
    if len(raw) != 32:
        return None
    number = int.from_bytes(raw, "little")
    y, sign = number & ((1 << 255) - 1), number >> 255
    if y >= P:
        return None                                # y not reduced: a second name for a point
    u, v = (y * y - 1) % P, (D * y * y + 1) % P
    x2 = u * pow(v, P - 2, P) % P
    x = pow(x2, (P + 3) // 8, P)
    if (x * x - x2) % P:
        x = x * SQRT_M1 % P
    if (x * x - x2) % P:
        return None                                # no x: not on the curve
    if x == 0 and sign:
        return None                                # -0: a second name for x = 0
    if x & 1 != sign:
        x = P - x
    return x, y


def add(a: Point, b: Point) -> Point:
    """a + b on edwards25519 (complete: defined for every pair of points)."""
    (x1, y1), (x2, y2) = a, b
    t = D * x1 * x2 * y1 * y2 % P
    x3 = (x1 * y2 + y1 * x2) * pow(1 + t, P - 2, P) % P
    y3 = (y1 * y2 + x1 * x2) * pow(1 - t, P - 2, P) % P
    return x3, y3


def times_eight(point: Point) -> Point:
    for _ in range(3):
        point = add(point, point)
    return point


def weakness(raw: bytes) -> Optional[str]:
    """Why the encoded key `raw` must not be trusted, or None for a sound key."""
    point = decode(raw)
    if point is None:
        return "not a point of Ed25519's curve in its one canonical encoding"
    if times_eight(point) == IDENTITY:
        return "a point of small order (8 times it is the curve's neutral point)"
    return None
