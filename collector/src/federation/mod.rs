//! Federation: provincial collectors stream upward to a national one.
//!
//! A province's collector enrolls at the national collector like an agent
//! does, with a province token (`canhgac token create --province CODE`,
//! then `canhgac-collector upstream enroll`), and from then on `serve`
//! keeps one `Telemetry/Stream` open to it ([`upstream`]): the same mTLS
//! gRPC protocol, the same Hello/Welcome/Batch/Ack exchange, the same
//! exactly-once rule (each (peer, seq) stored once).
//!
//! What goes up, as records in two feeds (the top byte of `seq`, see
//! [`seq`]), each in its own commit order:
//!
//! * [`FEED_ALERTS`]: the alerts selected by `[upstream] alert_severity`
//!   (default 1–2), seq = the alert's cursor here;
//! * [`FEED_INCIDENTS`]: every incident change (opened, correlated,
//!   acknowledged, transitioned, reported, merged), as the incident then
//!   stands (`RECORD_KIND_INCIDENT`), seq = the change's cursor here;
//! * [`FEED_SUMMARIES`]: the daily report of every ended day (alerts,
//!   incidents, systems and the four supervision layers per agency;
//!   `RECORD_KIND_SUMMARY`), seq = the day's Julian day number; kept at
//!   the national collector as the province's daily report
//!   (`canhgac report list` there).
//!
//! The province's own store is the queue: nothing is copied aside. On each
//! connection the national collector's Welcome says, per feed, the highest
//! seq it has stored from this province (`stored_through`), and the
//! province reads on from there. A national collector that was down for a
//! day gets the day's records when it returns; what retention removed
//! before it went up is counted (`upstream_lost`).
//!
//! At the national collector a province is a tenant (an agency record of
//! kind `province`): the province's records are stored under its code,
//! its forwarded alerts are not correlated again, and its incidents are
//! kept as they are ([`mirror`]), read-only, with their agency and
//! province. A `province` operator sees one province, a `national`
//! operator every one. Nothing here assumes two tiers: a national
//! collector may itself stream upward, and a record keeps the province it
//! first came from.

pub mod mirror;
pub mod upstream;

/// Alerts selected for upstream.
pub const FEED_ALERTS: u64 = 1;
/// Incident changes.
pub const FEED_INCIDENTS: u64 = 2;
/// Daily reports, position = the day's Julian day number.
pub const FEED_SUMMARIES: u64 = 3;
/// The feeds a downstream collector resumes.
pub const FEEDS: [u64; 3] = [FEED_ALERTS, FEED_INCIDENTS, FEED_SUMMARIES];

const FEED_SHIFT: u32 = 56;
const POSITION_MASK: u64 = (1 << FEED_SHIFT) - 1;

/// The seq of position `pos` (a cursor) of `feed`.
pub fn seq(feed: u64, pos: u64) -> u64 {
    (feed << FEED_SHIFT) | (pos & POSITION_MASK)
}

/// The seqs of `feed`, inclusive.
pub fn feed_range(feed: u64) -> (u64, u64) {
    (seq(feed, 0), seq(feed, POSITION_MASK))
}

/// The feed and position of a seq.
pub fn split(seq: u64) -> (u64, u64) {
    (seq >> FEED_SHIFT, seq & POSITION_MASK)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn feeds_keep_their_order_and_positions() {
        assert_eq!(split(seq(FEED_INCIDENTS, 77)), (FEED_INCIDENTS, 77));
        // every alert sorts before every incident change in one batch
        assert!(seq(FEED_ALERTS, POSITION_MASK) < seq(FEED_INCIDENTS, 1));
        let (lo, hi) = feed_range(FEED_ALERTS);
        assert!(lo < seq(FEED_ALERTS, 1) && seq(FEED_ALERTS, 1) <= hi && hi < seq(FEED_INCIDENTS, 0));
        // positions fit bigint in PostgreSQL
        assert!(i64::try_from(feed_range(FEED_INCIDENTS).1).is_ok());
    }
}
