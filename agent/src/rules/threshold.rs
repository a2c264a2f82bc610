//! `threshold` and `detection_filter`: Suricata's alert-rate logic, tracked
//! per rule and per source, destination, address pair, flow or rule.
//!
//! Windows start at the first counted event and last `seconds` (microsecond
//! precision, event time). `limit`: the first `count` events of a window
//! alert. `threshold`: every `count`th event of a window alerts. `both`: the
//! `count`th event of a window alerts, once. `backoff`: events number
//! `count`, `count*multiplier`, ... alert. `detection_filter`: every event
//! after the first `count` of a window alerts; with `unique_on`, every event
//! once more than `count` distinct ports were seen in the window. As in
//! Suricata, only the alert is affected: flowbits and datasets still apply.
//!
//! Memory is bounded: at the capacity, expired entries go first, then the
//! oldest eighth; evictions are counted.

use std::{collections::HashMap, net::IpAddr};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Limit,
    Threshold,
    Both,
    Backoff,
    Detection,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Track {
    Src,
    Dst,
    Both,
    Rule,
    Flow,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Unique {
    SrcPort,
    DstPort,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Threshold {
    pub kind: Kind,
    pub track: Track,
    pub count: u32,
    pub seconds: u32,
    pub multiplier: u32,
    pub unique: Option<Unique>,
}

/// Parses `threshold:` (`detection == false`) or `detection_filter:`.
pub(crate) fn parse(value: &str, detection: bool) -> Result<Threshold, String> {
    let mut kind = if detection { Some(Kind::Detection) } else { None };
    let mut track = None;
    let mut count = None;
    let mut seconds = None;
    let mut multiplier = None;
    let mut unique = None;
    for part in value.split(',') {
        let part = part.trim();
        if part.is_empty() {
            continue;
        }
        let (k, v) = part.split_once(char::is_whitespace).ok_or_else(|| format!("invalid part `{part}`"))?;
        let v = v.trim();
        let num = || v.parse::<u32>().map_err(|_| format!("invalid number `{v}` for `{k}`"));
        match k {
            "type" if !detection => {
                kind = Some(match v {
                    "limit" => Kind::Limit,
                    "threshold" => Kind::Threshold,
                    "both" => Kind::Both,
                    "backoff" => Kind::Backoff,
                    _ => return Err(format!("unknown threshold type `{v}`")),
                })
            }
            "track" => {
                track = Some(match v {
                    "by_src" => Track::Src,
                    "by_dst" => Track::Dst,
                    "by_both" => Track::Both,
                    "by_rule" => Track::Rule,
                    "by_flow" => Track::Flow,
                    _ => return Err(format!("unknown track `{v}`")),
                })
            }
            "count" => count = Some(num()?),
            "seconds" => seconds = Some(num()?),
            "multiplier" => multiplier = Some(num()?),
            "unique_on" if detection => {
                unique = Some(match v {
                    "src_port" => Unique::SrcPort,
                    "dst_port" => Unique::DstPort,
                    _ => return Err(format!("unknown unique_on `{v}`")),
                })
            }
            _ => return Err(format!("unknown threshold option `{k}`")),
        }
    }
    let kind = kind.ok_or("threshold without type")?;
    let track = track.ok_or("threshold without track")?;
    let count = count.ok_or("threshold without count")?;
    if kind == Kind::Backoff {
        if track != Track::Flow {
            return Err("backoff needs track by_flow".to_string());
        }
        let m = multiplier.ok_or("backoff without multiplier")?;
        if count == 0 || m < 2 {
            return Err(format!("invalid backoff count {count} multiplier {m}"));
        }
        return Ok(Threshold { kind, track, count, seconds: 0, multiplier: m, unique });
    }
    let seconds = seconds.ok_or("threshold without seconds")?;
    if count == 0 && kind != Kind::Detection {
        return Err("threshold count 0".to_string());
    }
    Ok(Threshold { kind, track, count, seconds, multiplier: 1, unique })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum TKey {
    Src(IpAddr),
    Dst(IpAddr),
    Both(IpAddr, IpAddr),
    Rule,
    Flow(u64),
}

#[derive(Debug)]
struct Entry {
    first_us: i64,
    expires_us: i64,
    count: u64,
    next: u64,
    ports: Vec<u16>,
}

/// The event fields thresholds look at.
pub(crate) struct Event {
    pub ts_us: i64,
    pub src: IpAddr,
    pub dst: IpAddr,
    pub sport: u16,
    pub dport: u16,
    pub flow_id: u64,
}

#[derive(Debug, Default)]
pub(crate) struct Table {
    map: HashMap<(u64, TKey), Entry>,
    capacity: usize,
}

const DEFAULT_CAPACITY: usize = 65_536;

impl Table {
    pub fn set_capacity(&mut self, c: usize) {
        self.capacity = c;
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    fn cap(&self) -> usize {
        if self.capacity == 0 { DEFAULT_CAPACITY } else { self.capacity }
    }

    /// Counts one match of rule `rule` (gid << 32 | sid) and says whether it alerts. Adds the
    /// number of evicted entries to `evictions`.
    pub fn check(&mut self, rule: u64, th: &Threshold, ev: &Event, evictions: &mut u64) -> bool {
        let key = match th.track {
            Track::Src => TKey::Src(ev.src),
            Track::Dst => TKey::Dst(ev.dst),
            Track::Both => {
                let (a, b) = if ev.src <= ev.dst { (ev.src, ev.dst) } else { (ev.dst, ev.src) };
                TKey::Both(a, b)
            }
            Track::Rule => TKey::Rule,
            Track::Flow => TKey::Flow(ev.flow_id),
        };
        let window = i64::from(th.seconds).saturating_mul(1_000_000);
        let port = match th.unique {
            Some(Unique::SrcPort) => Some(ev.sport),
            Some(Unique::DstPort) => Some(ev.dport),
            None => None,
        };
        let count = u64::from(th.count);
        let ts = ev.ts_us;
        if let Some(e) = self.map.get_mut(&(rule, key)) {
            let within =
                th.kind != Kind::Backoff && ts < e.first_us.saturating_add(window) && ts >= e.first_us;
            if th.kind == Kind::Backoff {
                e.count += 1;
                if e.count == e.next {
                    e.next = e.next.saturating_mul(u64::from(th.multiplier));
                    return true;
                }
                return false;
            }
            if !within {
                e.first_us = ts;
                e.expires_us = ts.saturating_add(window);
                e.count = 1;
                e.ports.clear();
                if let Some(p) = port {
                    e.ports.push(p);
                }
                return fresh(th, count);
            }
            e.count += 1;
            return match th.kind {
                Kind::Limit => e.count <= count,
                Kind::Threshold => {
                    if e.count >= count {
                        e.count = 0;
                        true
                    } else {
                        false
                    }
                }
                Kind::Both => e.count == count,
                Kind::Detection => match port {
                    Some(p) => {
                        if let Err(pos) = e.ports.binary_search(&p) {
                            e.ports.insert(pos, p);
                        }
                        e.ports.len() as u64 > count
                    }
                    None => e.count > count,
                },
                Kind::Backoff => false,
            };
        }
        if self.map.len() >= self.cap() {
            *evictions += self.make_room(ts);
        }
        let mut e = Entry {
            first_us: ts,
            expires_us: if th.kind == Kind::Backoff { i64::MAX } else { ts.saturating_add(window) },
            count: 1,
            next: count,
            ports: Vec::new(),
        };
        if let Some(p) = port {
            e.ports.push(p);
        }
        let alert = if th.kind == Kind::Backoff {
            if count == 1 {
                e.next = count.saturating_mul(u64::from(th.multiplier));
                true
            } else {
                false
            }
        } else {
            fresh(th, count)
        };
        self.map.insert((rule, key), e);
        alert
    }

    /// Drops expired entries, then the oldest eighth if still nearly full.
    fn make_room(&mut self, now: i64) -> u64 {
        self.map.retain(|_, e| e.expires_us > now);
        let cap = self.cap();
        if self.map.len() < cap - cap / 8 {
            return 0;
        }
        let n = (cap / 8).max(1).min(self.map.len());
        let mut v: Vec<(i64, (u64, TKey))> = self.map.iter().map(|(k, e)| (e.first_us, *k)).collect();
        if n < v.len() {
            v.select_nth_unstable_by_key(n, |x| x.0);
        }
        for (_, k) in v.into_iter().take(n) {
            self.map.remove(&k);
        }
        n as u64
    }
}

/// Outcome of the first event of a window.
fn fresh(th: &Threshold, count: u64) -> bool {
    match th.kind {
        Kind::Limit => count >= 1,
        Kind::Threshold | Kind::Both => count <= 1,
        Kind::Detection => count == 0,
        Kind::Backoff => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(ts_s: i64, dport: u16) -> Event {
        Event {
            ts_us: ts_s * 1_000_000,
            src: "10.0.0.1".parse().unwrap(),
            dst: "1.1.1.1".parse().unwrap(),
            sport: 1,
            dport,
            flow_id: 7,
        }
    }

    fn count_alerts(spec: &str, detection: bool, events: &[Event]) -> usize {
        let th = parse(spec, detection).unwrap();
        let mut t = Table::default();
        let mut evictions = 0;
        events.iter().filter(|e| t.check(0, &th, e, &mut evictions)).count()
    }

    #[test]
    fn suricata_verify_counts() {
        // threshold-rule-flow: 8 matches in one flow
        let evs: Vec<Event> = (0..8).map(|i| ev(i / 2, 0)).collect();
        assert_eq!(count_alerts("type limit, track by_flow, count 1, seconds 3600", false, &evs), 1);
        assert_eq!(count_alerts("type limit, track by_flow, count 2, seconds 3600", false, &evs), 2);
        assert_eq!(count_alerts("type both, track by_flow, count 3, seconds 3600", false, &evs), 1);
        assert_eq!(count_alerts("type threshold, track by_flow, count 3, seconds 3600", false, &evs), 2);
        // detection_filter-rule-hostsrc
        for (c, n) in [(1, 7), (2, 6), (4, 4), (7, 1), (8, 0)] {
            let spec = format!("track by_src, count {c}, seconds 3600");
            assert_eq!(count_alerts(&spec, true, &evs), n, "count {c}");
        }
        // detection_filter-distinct-dstport(-no-dups)
        let spec1 = "track by_dst, count 1, seconds 60, unique_on dst_port";
        assert_eq!(count_alerts(spec1, true, &[ev(0, 80), ev(1, 81)]), 1);
        let spec3 = "track by_dst, count 3, seconds 60, unique_on dst_port";
        assert_eq!(count_alerts(spec3, true, &[ev(0, 80), ev(1, 80), ev(2, 81)]), 0);
        assert_eq!(count_alerts(spec1, true, &[ev(0, 80), ev(1, 80), ev(2, 80)]), 0);
    }

    #[test]
    fn windows_expire() {
        let evs = [ev(0, 0), ev(10, 0), ev(61, 0), ev(62, 0)];
        assert_eq!(count_alerts("type limit, track by_src, count 1, seconds 60", false, &evs), 2);
        assert_eq!(count_alerts("type both, track by_src, count 2, seconds 60", false, &evs), 2);
        let b: Vec<Event> = (0..100).map(|i| ev(i, 0)).collect();
        // backoff 1, 10, 100 (but only 100 events: 1 and 10 and 100)
        assert_eq!(count_alerts("type backoff, track by_flow, count 1, multiplier 10", false, &b), 3);
    }

    #[test]
    fn parse_errors() {
        assert!(parse("type limit, track by_src, count 1", false).is_err());
        assert!(parse("type nope, track by_src, count 1, seconds 1", false).is_err());
        assert!(parse("type limit, track by_nobody, count 1, seconds 1", false).is_err());
        assert!(parse("track by_src, count x, seconds 1", true).is_err());
        assert!(parse("type backoff, track by_src, count 1, multiplier 10", false).is_err());
        assert!(parse("track by_src, count 1, seconds 1, unique_on dst_port", true).is_ok());
    }

    #[test]
    fn bounded_memory() {
        let th = parse("type limit, track by_src, count 1, seconds 3600", false).unwrap();
        let mut t = Table::default();
        t.set_capacity(64);
        let mut evictions = 0;
        for i in 0..1000u32 {
            let e = Event {
                ts_us: i64::from(i),
                src: IpAddr::from(i.to_be_bytes()),
                dst: "1.1.1.1".parse().unwrap(),
                sport: 0,
                dport: 0,
                flow_id: 0,
            };
            assert!(t.check(0, &th, &e, &mut evictions));
        }
        assert!(t.len() <= 64);
        assert!(evictions > 0);
    }
}
