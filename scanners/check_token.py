#!/usr/bin/env python3
"""Checks token-service checksummed tokens offline: prints `valid` or `invalid` for each
argument (or each line of standard input). Exit code 0 when all are valid, 1 otherwise.
Needs only the Python standard library; the same check the detect-secrets plugin makes."""
import re
import sys
import zlib

BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
SHAPE = re.compile(r"[a-z][a-z0-9]{0,11}[psc]_[0-9A-Za-z]{36}")


def valid(token: str) -> bool:
    if not SHAPE.fullmatch(token):
        return False
    value = 0
    for char in token[-6:]:
        value = value * 62 + BASE62.index(char)
    return value == zlib.crc32(token[:-6].encode("ascii"))


def main() -> int:
    tokens = sys.argv[1:] or [line.strip() for line in sys.stdin if line.strip()]
    results = [valid(t) for t in tokens]
    for ok in results:
        print("valid" if ok else "invalid")
    return 0 if results and all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
