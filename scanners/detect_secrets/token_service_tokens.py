"""A detect-secrets plugin for token-service's checksummed tokens.

token-service (with `[token_format] style = "checksummed"`) mints secrets of the shape

    <prefix><kind>_<30 base62 random characters><6 base62 characters of CRC32>

where <prefix> is the deployment's prefix (1 to 12 of a-z and 0-9, starting with a letter;
`mm` by default), <kind> is `p` (personal access token), `s` (session) or `c` (slash-command
token), and the checksum is the CRC32 (IEEE, as zlib computes it) of everything before it,
written in base62 (0-9, A-Z, a-z), most significant digit first.

The regular expression finds candidates; a candidate is reported only when its checksum holds,
so look-alikes (and a token with a typo) are not reported. Use it with

    detect-secrets scan --plugin scanners/detect_secrets/token_service_tokens.py

and set TOKEN_SERVICE_TOKEN_PREFIXES (comma-separated, e.g. `mm,acme`) to report only your
deployments' prefixes; unset, any prefix of the right shape is accepted.
"""
import os
import re
import zlib
from typing import Generator

from detect_secrets.plugins.base import RegexBasedDetector

BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
RANDOM_CHARS = 30
CHECKSUM_CHARS = 6

# Not preceded or followed by a character a token could contain, so that a token is found
# whole and a longer word that merely contains the shape is not.
TOKEN = re.compile(
    r"(?<![0-9A-Za-z_])([a-z][a-z0-9]{0,11}[psc]_[0-9A-Za-z]{36})(?![0-9A-Za-z_])"
)


def checksum_holds(token: str) -> bool:
    """Whether the last six characters are the base62 CRC32 of the rest."""
    body, checksum = token[:-CHECKSUM_CHARS], token[-CHECKSUM_CHARS:]
    value = 0
    for char in checksum:
        index = BASE62.find(char)
        if index < 0:
            return False
        value = value * 62 + index
    return value == zlib.crc32(body.encode("ascii"))


def prefix_allowed(token: str) -> bool:
    allowed = os.environ.get("TOKEN_SERVICE_TOKEN_PREFIXES", "").strip()
    if not allowed:
        return True
    prefix = token[: token.index("_") - 1]
    return prefix in {p.strip() for p in allowed.split(",")}


class TokenServiceTokenDetector(RegexBasedDetector):
    """Scans for token-service checksummed tokens (personal access, session, slash command)."""

    secret_type = "token-service token"

    denylist = [TOKEN]

    def analyze_string(self, string: str) -> Generator[str, None, None]:
        for candidate in super().analyze_string(string):
            if checksum_holds(candidate) and prefix_allowed(candidate):
                yield candidate
