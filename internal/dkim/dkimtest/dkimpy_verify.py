"""Verify every DKIM signature of a message with dkimpy, independently.

Run by dkimtest.Verify (TestDkimpyVerifies and the relay's end-to-end tests) with Debian's /usr/bin/python3 (python3-dkim):

    dkimpy_verify.py KEYS.json MESSAGE...

KEYS.json maps "<selector>._domainkey.<domain>" to the TXT value. Prints a
JSON list with, for each MESSAGE, a list with one object per DKIM-Signature
field, top first: {"a": ..., "d": ..., "s": ..., "ok": bool, "error": str}.
Messages are checked in one run because starting Python costs more than
verifying.

dkim.verify() checks only the topmost signature, so each one is checked by
its own dkim.DKIM object with verify(idx=i): a failure of one can never hide
behind the success of another.
"""

import json
import sys

import dkim


def verify_all(msg, dnsfunc):
    count = sum(1 for k, _ in dkim.DKIM(msg).headers if k.lower() == b"dkim-signature")
    results = []
    for i in range(count):
        d = dkim.DKIM(msg)
        error = ""
        try:
            ok = bool(d.verify(idx=i, dnsfunc=dnsfunc))
        except dkim.DKIMException as e:
            ok, error = False, "%s: %s" % (type(e).__name__, e)
        fields = getattr(d, "signature_fields", None) or {}
        results.append({
            "a": fields.get(b"a", b"").decode(),
            "d": fields.get(b"d", b"").decode(),
            "s": fields.get(b"s", b"").decode(),
            "ok": ok,
            "error": error,
        })
    return results


def main():
    with open(sys.argv[1]) as f:
        records = json.load(f)

    def dnsfunc(name, timeout=5):
        # dkimpy asks for b"<selector>._domainkey.<domain>." and wants the
        # record as bytes, or None for no record.
        value = records.get(name.decode("ascii").rstrip("."))
        return None if value is None else value.encode("ascii")

    reports = []
    for path in sys.argv[2:]:
        with open(path, "rb") as f:
            reports.append(verify_all(f.read(), dnsfunc))
    json.dump(reports, sys.stdout)


if __name__ == "__main__":
    main()
