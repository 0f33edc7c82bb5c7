"""Secret scanners against token-service's checksummed tokens.

Builds a temporary git repository holding one live token (TS_VALID_TOKEN, minted by the server
under test), the same token with a one-character typo, and look-alikes, then checks that:
- detect-secrets with scanners/detect_secrets/token_service_tokens.py (and no other plugin)
  reports exactly the valid token, once;
- the gitleaks rule's regular expression (scanners/gitleaks/token-service.toml) matches the
  valid token and the typo (gitleaks sees shapes, not checksums) and none of the look-alikes;
- scanners/check_token.py tells the valid token from the typo.
Configured by TS_VALID_TOKEN and TS_REPO (the repository root). Prints `ALL OK` at the end.
Never prints a token.
"""
import hashlib
import json
import os
import re
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

REPO = Path(os.environ["TS_REPO"])
VALID = os.environ["TS_VALID_TOKEN"]
PLUGIN = REPO / "scanners/detect_secrets/token_service_tokens.py"
DETECT_SECRETS = Path(sys.executable).with_name("detect-secrets")


def typo(token: str) -> str:
    at = 12
    return token[:at] + ("b" if token[at] == "a" else "a") + token[at + 1 :]


def check(condition: bool, what: str) -> None:
    if not condition:
        print(f"FAILED: {what}")
        sys.exit(1)
    print(f"ok: {what}")


def main() -> None:
    bad = typo(VALID)
    body = VALID[VALID.index("_") + 1 :]
    look_alikes = [
        "k3x9f8q1m7zt2w5y6b4n0c8d1e",  # a Mattermost-format id: no prefix, nothing to check
        "mmp_" + body[:-1],  # one character short
        "mmp_" + body + "Z",  # one character long
        "MMP_" + body,  # upper-case prefix
        "mmx_" + body,  # unknown kind letter
        "mmp-" + body,  # dash instead of underscore
        "x" + VALID + "y",  # inside a longer word
        "mmp_" + "0" * 36,  # right shape, checksum of nothing
    ]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        subprocess.run(["git", "init", "-q", str(work)], check=True)
        (work / "deploy.env").write_text(f"API_URL=https://chat.example.com\nTOKEN={VALID}\n")
        (work / "notes.md").write_text(f"old token (typo): {bad}\n")
        (work / "fixtures.txt").write_text("\n".join(f"value = {s}" for s in look_alikes) + "\n")
        subprocess.run(["git", "-C", str(work), "add", "-A"], check=True)

        listed = subprocess.run(
            [str(DETECT_SECRETS), "scan", "--list-all-plugins"],
            check=True, capture_output=True, text=True, cwd=work,
        ).stdout.split()
        disable = [arg for name in listed if name != "TokenServiceTokenDetector"
                   for arg in ("--disable-plugin", name)]
        scan = subprocess.run(
            [str(DETECT_SECRETS), "scan", "--plugin", str(PLUGIN), *disable],
            check=True, capture_output=True, text=True, cwd=work,
        )
        results = json.loads(scan.stdout)["results"]
        findings = [(f, r["type"], r["hashed_secret"]) for f, rs in results.items() for r in rs]
        check(len(findings) == 1, f"detect-secrets reports exactly one secret (got {len(findings)})")
        filename, kind, hashed = findings[0]
        check(filename == "deploy.env", "the finding is in deploy.env")
        check(kind == "token-service token", "reported as a token-service token")
        check(hashed == hashlib.sha1(VALID.encode()).hexdigest(), "the finding is the valid token")

        # The same scan, with every built-in plugin on as well: ours still reports only it.
        scan = subprocess.run(
            [str(DETECT_SECRETS), "scan", "--plugin", str(PLUGIN)],
            check=True, capture_output=True, text=True, cwd=work,
        )
        ours = [r for rs in json.loads(scan.stdout)["results"].values() for r in rs
                if r["type"] == "token-service token"]
        check(len(ours) == 1, "beside the built-in plugins, ours still reports one secret")

    rule = tomllib.loads((REPO / "scanners/gitleaks/token-service.toml").read_text())["rules"][0]
    gitleaks = re.compile(rule["regex"])
    found = lambda text: [m.group(rule["secretGroup"]) for m in gitleaks.finditer(text)]
    check(found(f"TOKEN={VALID}\n") == [VALID], "the gitleaks rule matches the valid token")
    check(found(f"old: {bad}\n") == [bad], "the gitleaks rule matches the typo too (shape only)")
    check(all(found(f"value = {s}\n") == [] or s == "mmp_" + "0" * 36 for s in look_alikes),
          "the gitleaks rule matches no look-alike of the wrong shape")
    check(any(k in VALID for k in rule["keywords"]), "a keyword of the rule occurs in the token")

    checker = REPO / "scanners/check_token.py"
    run = lambda token: subprocess.run([sys.executable, str(checker), token], capture_output=True, text=True)
    check(run(VALID).returncode == 0 and run(VALID).stdout.strip() == "valid", "check_token.py: valid")
    check(run(bad).returncode == 1 and run(bad).stdout.strip() == "invalid", "check_token.py: typo invalid")
    print("ALL OK")


if __name__ == "__main__":
    main()
