#!/usr/bin/env python3
"""Turns the node e2e suite's JUnit report into the Markdown table
scripts/conformance.sh writes (spec, result, seconds, reason) and prints the
closing line `N passed, N failed, N skipped`; exits 1 when a spec failed.

usage: conformance-report.py JUNIT RULES.tsv OUT.md TIER
RULES.tsv: `regex<TAB>reason` per line, the skip rules the run used
(`!regex`: names that do not match)."""
import re
import sys
import xml.etree.ElementTree as ET


def first_line(text):
    for line in (text or "").splitlines():
        line = line.strip()
        if line:
            return line[:200]
    return ""


def main():
    junit, rules_path, out, tier = sys.argv[1:5]
    rules = []
    with open(rules_path) as f:
        for line in f:
            if "\t" in line:
                regex, reason = line.rstrip("\n").split("\t", 1)
                # `!regex`: the rule holds for names that do not match.
                negate = regex.startswith("!")
                rules.append((re.compile(regex.lstrip("!")), negate, reason))
    rows = []
    for case in ET.parse(junit).iter("testcase"):
        name = case.get("name", "")
        name = re.sub(r"^\[It\] ", "", name)
        if "[sig-node]" not in name:
            continue
        seconds = float(case.get("time") or 0)
        failure = case.find("failure")
        if failure is None:
            failure = case.find("error")
        skipped = case.find("skipped")
        if failure is not None:
            result, reason = "failed", first_line(failure.get("message") or failure.text)
        elif skipped is not None:
            result = "skipped"
            reason = next(
                (r for regex, negate, r in rules if bool(regex.search(name)) != negate),
                None,
            )
            if reason is None:
                message = skipped.get("message") or ""
                reason = first_line(re.sub(r"^skipped( - )?", "", message)) or "skipped"
        else:
            result, reason = "passed", ""
        rows.append((name, result, seconds, reason))
    order = {"failed": 0, "passed": 1, "skipped": 2}
    rows.sort(key=lambda r: (order[r[1]], r[0]))
    counts = {k: sum(1 for r in rows if r[1] == k) for k in order}
    total = sum(r[2] for r in rows)
    with open(out, "w") as f:
        f.write(f"# Upstream node e2e specs against berth ({tier} tier)\n\n")
        f.write(
            f"{counts['passed']} passed, {counts['failed']} failed, "
            f"{counts['skipped']} skipped; {total:.0f} s in specs.\n\n"
        )
        f.write("| spec | result | seconds | reason |\n|---|---|---:|---|\n")
        for name, result, seconds, reason in rows:
            cell = lambda s: s.replace("|", "\\|").replace("\n", " ")
            f.write(f"| {cell(name)} | {result} | {seconds:.1f} | {cell(reason)} |\n")
    print(f"table: {out}")
    print(f"{counts['passed']} passed, {counts['failed']} failed, {counts['skipped']} skipped")
    return 1 if counts["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
