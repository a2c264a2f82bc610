#!/usr/bin/env python3
"""Compare canhgac's and Suricata's EVE output of a parity run (run.sh).

Reads OUT/cases/NNN/{capture, canhgac.json, suricata/eve.json} and prints:
per signature id our count, Suricata's and the flows where they differ;
totals; the share of Suricata's (sid, src, dest) alerts we also raise; the
rules firing more than twice on a flow where Suricata fires once; and a
field-by-field comparison of EVE dns/tls/http records on a sample.
Python 3 standard library only.
"""

import argparse
import collections
import ipaddress
import json
import os
import sys


def read_eve(path):
    records = []
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                line = line.strip()
                if not line.startswith("{"):
                    continue
                try:
                    records.append(json.loads(line))
                except ValueError:
                    pass
    except FileNotFoundError:
        pass
    return records


def proto_of(r):
    p = str(r.get("proto", "")).upper()
    return {"IPV6-ICMP": "ICMP6", "ICMPV6": "ICMP6"}.get(p, p)


def ip(text):
    """An address in one spelling (Suricata writes IPv6 addresses in full)."""
    try:
        return ipaddress.ip_address(text).compressed
    except ValueError:
        return text or ""


def endpoint(r, side):
    return (ip(r.get(side + "_ip")), r.get(side + "_port", 0) or 0)


def flow_key(r):
    """Direction-free five-tuple."""
    a, b = endpoint(r, "src"), endpoint(r, "dest")
    return (proto_of(r),) + tuple(sorted([a, b], key=lambda e: (str(e[0]), e[1])))


def fmt_flow(k):
    proto, a, b = k
    return f"{proto} {a[0]}:{a[1]} <-> {b[0]}:{b[1]}"


def is_rule_alert(r, ours):
    if r.get("event_type") != "alert":
        return False
    if ours:
        # behavioural detectors and indicators also raise alerts: only rules count
        return (r.get("canhgac") or {}).get("detector") == "rule"
    return True


class Case:
    def __init__(self, d):
        self.dir = d
        with open(os.path.join(d, "capture"), encoding="utf-8") as f:
            self.capture = f.read().strip()
        self.ours = read_eve(os.path.join(d, "canhgac.json"))
        self.theirs = read_eve(os.path.join(d, "suricata", "eve.json"))
        self.name = short_name(self.capture)


def short_name(path):
    parts = path.split("/")
    if "corpus" in parts:
        parts = parts[parts.index("corpus") + 1:]
    return "/".join(parts)


# ---------------------------------------------------------------------------
# alerts


def compare_alerts(cases, args, out):
    ours_by_sid = collections.Counter()
    theirs_by_sid = collections.Counter()
    msg = {}
    # (sid) -> [(capture, flow, ours, theirs)]
    flow_diffs = collections.defaultdict(list)
    storm = []  # (sid, capture, flow, ours)
    covered = 0
    theirs_total = 0
    theirs_tuples = set()
    ours_tuples = set()
    for c in cases:
        o_flow = collections.Counter()
        t_flow = collections.Counter()
        o_tuples = set()
        for r in c.ours:
            if not is_rule_alert(r, True):
                continue
            sid = r["alert"]["signature_id"]
            ours_by_sid[sid] += 1
            msg.setdefault(sid, r["alert"].get("signature", ""))
            o_flow[(sid, flow_key(r))] += 1
            o_tuples.add((sid, ip(r.get("src_ip")), ip(r.get("dest_ip"))))
        for r in c.theirs:
            if not is_rule_alert(r, False):
                continue
            sid = r["alert"]["signature_id"]
            theirs_by_sid[sid] += 1
            msg[sid] = r["alert"].get("signature", "")
            t_flow[(sid, flow_key(r))] += 1
            theirs_total += 1
            t = (sid, ip(r.get("src_ip")), ip(r.get("dest_ip")))
            theirs_tuples.add((c.name,) + t)
            if t in o_tuples:
                covered += 1
        ours_tuples.update((c.name,) + t for t in o_tuples)
        for key in set(o_flow) | set(t_flow):
            o, t = o_flow.get(key, 0), t_flow.get(key, 0)
            if o != t:
                flow_diffs[key[0]].append((c.name, key[1], o, t))
            if o > 2 and t == 1:
                storm.append((key[0], c.name, key[1], o))

    sids = sorted(set(ours_by_sid) | set(theirs_by_sid),
                  key=lambda s: (-(abs(ours_by_sid[s] - theirs_by_sid[s])), s))
    same = [s for s in sids if ours_by_sid[s] == theirs_by_sid[s]]
    diff = [s for s in sids if ours_by_sid[s] != theirs_by_sid[s]]

    p = lambda *a: print(*a, file=out)
    p("== rule alerts per signature id (differences first) ==")
    p(f"{'sid':>10} {'canhgac':>8} {'suricata':>8}  signature")
    for s in sids:
        mark = "" if ours_by_sid[s] == theirs_by_sid[s] else " *"
        p(f"{s:>10} {ours_by_sid[s]:>8} {theirs_by_sid[s]:>8}  {msg.get(s, '')[:70]}{mark}")
        if s in flow_diffs and args.flows > 0:
            rows = sorted(flow_diffs[s], key=lambda x: (x[0], fmt_flow(x[1])))
            for cap, fk, o, t in rows[: args.flows]:
                p(f"{'':>12}{fmt_flow(fk)}  canhgac {o} suricata {t}  [{cap}]")
            if len(rows) > args.flows:
                p(f"{'':>12}... {len(rows) - args.flows} more flows")
    ours_total = sum(ours_by_sid.values())
    p()
    p("== totals ==")
    p(f"rule alerts: canhgac {ours_total}, suricata {theirs_total}"
      + (f" ({ours_total / theirs_total:.3f}x)" if theirs_total else ""))
    p(f"signature ids: {len(sids)}, same count {len(same)}, different {len(diff)}")
    share = covered / theirs_total if theirs_total else 1.0
    p(f"suricata alerts whose (sid, src, dest) canhgac also raises (same capture): "
      f"{covered}/{theirs_total} = {share * 100:.2f}%")
    tshare = len(theirs_tuples & ours_tuples) / len(theirs_tuples) if theirs_tuples else 1.0
    p(f"distinct (capture, sid, src, dest): suricata {len(theirs_tuples)}, canhgac {len(ours_tuples)}, "
      f"both {len(theirs_tuples & ours_tuples)} ({tshare * 100:.2f}% of suricata's)")
    p(f"rules firing > 2 times on a flow where suricata fires once: "
      f"{len(set(s for s, *_ in storm))} sids, {len(storm)} flows")
    for sid, cap, fk, o in sorted(storm)[:20]:
        p(f"{'':>4}{sid} {fmt_flow(fk)} canhgac {o}  [{cap}]")
    return {
        "canhgac_alerts": ours_total,
        "suricata_alerts": theirs_total,
        "sids": len(sids),
        "sids_same_count": len(same),
        "sids_different": diff,
        "share_of_suricata_alerts": share,
        "share_of_suricata_tuples": tshare,
        "storm_sids": sorted(set(s for s, *_ in storm)),
        "per_sid": {str(s): [ours_by_sid[s], theirs_by_sid[s]] for s in sids},
    }


# ---------------------------------------------------------------------------
# protocol records


def dns_records(records, ours):
    """(flow, id, kind, first rrname) -> normalised fields."""
    res = {}
    for r in records:
        if r.get("event_type") != "dns":
            continue
        d = r.get("dns") or {}
        t = d.get("type")
        if t in ("query", "request"):
            kind = "request"
        elif t in ("answer", "response"):
            kind = "response"
        else:
            continue
        if "queries" in d:  # Suricata 8 (EVE dns version 3)
            qs = [(q.get("rrname"), q.get("rrtype")) for q in d["queries"]]
        elif kind == "request":  # one record per question
            qs = [(d.get("rrname"), d.get("rrtype"))]
        else:
            qs = [(d.get("rrname"), d.get("rrtype"))] if d.get("rrname") is not None else []
        key = (flow_key(r), d.get("id"), kind, qs[0][0] if qs else None)
        cur = res.get(key)
        if cur is not None and kind == "request" and "queries" not in d:
            cur["queries"] = sorted(set(cur["queries"]) | set(qs), key=str)
            continue
        fields = {"queries": sorted(set(qs), key=str)}
        if kind == "response":
            fields["rcode"] = d.get("rcode")
            fields["answers"] = sorted(
                (a.get("rrname"), a.get("rrtype"), str(a.get("rdata"))) for a in d.get("answers", []))
            fields["authorities"] = sorted(
                (a.get("rrname"), a.get("rrtype")) for a in d.get("authorities", []))
        if cur is None:
            res[key] = fields
    return res


TLS_FIELDS = ["sni", "version", "subject", "issuerdn", "serial", "fingerprint",
              "notbefore", "notafter", "ja3.hash", "ja3s.hash", "ja4"]
HTTP_FIELDS = ["hostname", "url", "http_method", "protocol", "status", "http_user_agent",
               "http_content_type", "http_refer", "length"]


def dotted(obj, path):
    for part in path.split("."):
        if not isinstance(obj, dict) or part not in obj:
            return None
        obj = obj[part]
    return obj


def tls_records(records, ours):
    res = {}
    for r in records:
        if r.get("event_type") != "tls":
            continue
        t = r.get("tls") or {}
        key = (flow_key(r),)
        res.setdefault(key, {f: dotted(t, f) for f in TLS_FIELDS})
    return res


def http_records(records, ours):
    res = {}
    seen = collections.Counter()
    for r in records:
        if r.get("event_type") != "http":
            continue
        h = r.get("http") or {}
        fk = flow_key(r)
        # transactions of a flow in order; the url makes a mismatch visible
        key = (fk, seen[fk])
        seen[fk] += 1
        res[key] = {f: dotted(h, f) for f in HTTP_FIELDS}
    return res


def compare_fields(cases, kind, extract, args, out):
    p = lambda *a: print(*a, file=out)
    both = []
    only_ours = only_theirs = 0
    for c in cases:
        o = extract(c.ours, True)
        t = extract(c.theirs, False)
        only_ours += len(set(o) - set(t))
        only_theirs += len(set(t) - set(o))
        for k in set(o) & set(t):
            both.append((c.name, k, o[k], t[k]))
    both.sort(key=lambda x: (x[0], str(x[1])))
    if len(both) > args.sample:
        step = len(both) / args.sample
        both = [both[int(i * step)] for i in range(args.sample)]
    field_stats = collections.OrderedDict()
    examples = collections.defaultdict(list)
    equal_records = 0
    for cap, k, o, t in both:
        all_equal = True
        for f in sorted(set(o) | set(t)):
            ov, tv = o.get(f), t.get(f)
            st = field_stats.setdefault(f, collections.Counter())
            if tv is None and ov is None:
                continue
            if tv is None:
                st["suricata has none"] += 1
            elif ov is None:
                st["canhgac has none"] += 1
                all_equal = False
            elif ov == tv:
                st["equal"] += 1
            else:
                st["different"] += 1
                all_equal = False
                if len(examples[f]) < args.examples:
                    examples[f].append((cap, k, ov, tv))
        equal_records += all_equal
    p(f"== EVE {kind}: {len(both)} matched records compared (sample), "
      f"{equal_records} equal on every field Suricata has; "
      f"unmatched: canhgac only {only_ours}, suricata only {only_theirs} ==")
    for f, st in field_stats.items():
        if not st:
            continue
        p(f"  {f:<20} " + ", ".join(f"{k} {v}" for k, v in sorted(st.items())))
        for cap, k, ov, tv in examples.get(f, []):
            p(f"      {fmt_flow(k[0])} [{cap}]\n        canhgac:  {str(ov)[:150]}\n"
              f"        suricata: {str(tv)[:150]}")
    return {"compared": len(both), "equal": equal_records, "only_canhgac": only_ours,
            "only_suricata": only_theirs,
            "fields": {f: dict(st) for f, st in field_stats.items()}}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", help="run.sh's output directory")
    ap.add_argument("--flows", type=int, default=8, help="differing flows listed per sid")
    ap.add_argument("--sample", type=int, default=300, help="records compared per EVE type")
    ap.add_argument("--examples", type=int, default=3, help="differing values shown per field")
    args = ap.parse_args()
    root = os.path.join(args.out, "cases")
    cases = [Case(os.path.join(root, d)) for d in sorted(os.listdir(root))
             if os.path.isfile(os.path.join(root, d, "capture"))]
    if not cases:
        sys.exit(f"compare.py: no cases under {root}")
    print(f"{len(cases)} captures")
    summary = {"captures": len(cases)}
    summary["alerts"] = compare_alerts(cases, args, sys.stdout)
    for kind, extract in (("dns", dns_records), ("tls", tls_records), ("http", http_records)):
        print()
        summary[kind] = compare_fields(cases, kind, extract, args, sys.stdout)
    with open(os.path.join(args.out, "summary.json"), "w", encoding="utf-8") as f:
        json.dump(summary, f, indent=1, sort_keys=True)


if __name__ == "__main__":
    main()
