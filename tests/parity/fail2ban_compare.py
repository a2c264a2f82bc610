#!/usr/bin/env python3
"""Compare fail2ban and canhgac on one authentication log (see fail2ban.sh).

    fail2ban_compare.py F2B_ROWS CANHGAC_EVE [--maxretry 5] [--findtime 600] [--bantime 600]

F2B_ROWS: the output of `fail2ban-regex -o row LOG FILTER`, one failure per
line: `['ip', epoch, {...}],`. CANHGAC_EVE: `canhgac-agent analyze --log
LOG --eve-types alert,auth` (EVE JSON lines).

fail2ban's jail is replayed as its FailManager does it: per source, the
failures of the last `findtime` seconds; at `maxretry` of them the source is
banned for `bantime` seconds and its count starts again (failures while
banned are not counted: a real ban would have blocked them). canhgac's
answer is its `auth-bruteforce` alerts (5 failed logins from one source
within 600 s by default, the same thresholds as fail2ban's sshd jail).

Prints one line per measure, then the sources where the two disagree.
Python 3 standard library only.
"""

import argparse
import ast
import collections
import datetime
import json
import sys


def f2b_failures(path):
    """(ip, epoch) per failure fail2ban's filter found."""
    out = []
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            line = line.strip().rstrip(",")
            if not line.startswith("["):
                continue
            try:
                row = ast.literal_eval(line)
            except (ValueError, SyntaxError):
                continue
            if len(row) >= 2 and row[0]:
                out.append((str(row[0]), float(row[1])))
    return out


def replay_jail(failures, maxretry, findtime, bantime):
    """Bans per source, as fail2ban's jail would give them."""
    bans = collections.Counter()
    recent = collections.defaultdict(collections.deque)
    banned_until = {}
    for ip, t in sorted(failures, key=lambda x: x[1]):
        if banned_until.get(ip, float("-inf")) > t:
            continue
        q = recent[ip]
        q.append(t)
        while q and q[0] <= t - findtime:
            q.popleft()
        if len(q) >= maxretry:
            bans[ip] += 1
            banned_until[ip] = t + bantime
            q.clear()
    return bans


def canhgac(path):
    """Failures per source and brute-force alerts per source."""
    failures = collections.Counter()
    alerts = collections.Counter()
    with open(path, encoding="utf-8") as f:
        for line in f:
            r = json.loads(line)
            src = r.get("src_ip")
            if r.get("event_type") == "auth" and r.get("auth", {}).get("outcome") == "failure" and src:
                failures[src] += 1
            elif r.get("event_type") == "alert" and r.get("canhgac", {}).get("detector") == "auth-bruteforce":
                alerts[src] += 1
    return failures, alerts


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("rows")
    ap.add_argument("eve")
    ap.add_argument("--maxretry", type=int, default=5)
    ap.add_argument("--findtime", type=float, default=600)
    ap.add_argument("--bantime", type=float, default=600)
    a = ap.parse_args()
    f2b = f2b_failures(a.rows)
    f2b_per_ip = collections.Counter(ip for ip, _ in f2b)
    bans = replay_jail(f2b, a.maxretry, a.findtime, a.bantime)
    ours_per_ip, alerts = canhgac(a.eve)
    both = set(bans) & set(alerts)
    print(f"failures: fail2ban {len(f2b)} from {len(f2b_per_ip)} sources; "
          f"canhgac {sum(ours_per_ip.values())} from {len(ours_per_ip)} sources; "
          f"sources in both {len(set(f2b_per_ip) & set(ours_per_ip))}")
    print(f"banned or alerted: fail2ban bans {sum(bans.values())} of {len(bans)} sources; "
          f"canhgac auth-bruteforce alerts {sum(alerts.values())} on {len(alerts)} sources; "
          f"sources in both {len(both)}")
    only_f2b = sorted(set(bans) - set(alerts))
    only_ours = sorted(set(alerts) - set(bans))
    for ip in only_f2b:
        print(f"  fail2ban only: {ip} ({bans[ip]} bans, {f2b_per_ip[ip]} failures by fail2ban, "
              f"{ours_per_ip[ip]} by canhgac)")
    for ip in only_ours:
        print(f"  canhgac only: {ip} ({alerts[ip]} alerts, {ours_per_ip[ip]} failures by canhgac, "
              f"{f2b_per_ip[ip]} by fail2ban)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
