//! Regulatory data: incident categories and how alerts map onto them,
//! deadline rule packs, assessment periods, retention by level and the
//! "serious incident" rule.
//!
//! The defaults live in `collector/data/*.toml` (embedded at build time);
//! `regulation.*_file` in collector.toml replaces a file. Nothing in the
//! code branches on a category, a level or a deadline: it reads this.

use std::{collections::BTreeMap, path::Path, time::Duration};

use canhgac_proto::{
    conf::{ConfigError, Source},
    v1::RecordFacts,
};
use serde::Deserialize;

pub const DEFAULT_REGULATION: &str = include_str!("../data/regulation.toml");
pub const DEFAULT_CATEGORIES: &str = include_str!("../data/incident_categories.toml");
pub const DEFAULT_RULE_PACKS: &str = include_str!("../data/rule_packs.toml");

/// Incident milestones, in workflow order.
pub const MILESTONES: &[&str] =
    &["detected", "notified", "initial_report", "in_progress", "closed", "completion_report"];

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRegulation {
    version: u32,
    assessment: Assessment,
    retention: Retention,
    serious: SeriousRule,
    #[serde(default)]
    reports: Reports,
}

/// What incident reports carry besides the incident.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Reports {
    /// Prefix of report numbers (`SC-2026-000042-BĐ`).
    #[serde(default)]
    pub number_prefix: String,
    /// Who the reports are addressed to.
    #[serde(default)]
    pub recipients: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Assessment {
    pub agency_months: u32,
    #[serde(default)]
    pub level_months: BTreeMap<String, u32>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Retention {
    pub min_days: u32,
    pub level_days: BTreeMap<String, u32>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeriousRule {
    pub min_level: u32,
    pub impacts: Vec<String>,
    pub requires_owner_cannot_handle: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCategories {
    version: u32,
    default_category: String,
    category: Vec<Category>,
    #[serde(default)]
    map: Vec<MapRule>,
    #[serde(default)]
    opening: Opening,
    #[serde(default)]
    host_detectors: Vec<String>,
}

/// Which alerts may open an incident on their own; the others only join
/// an incident they match.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Opening {
    /// Alerts of a lower severity (a higher number) open none.
    #[serde(default = "two")]
    pub max_severity: u32,
    /// Signature names that mark informational or policy rules.
    #[serde(default)]
    pub informational_signature_prefixes: Vec<String>,
    /// EVE `alert.category` values (classtype descriptions) likewise.
    #[serde(default)]
    pub informational_eve_categories: Vec<String>,
}

impl Default for Opening {
    fn default() -> Opening {
        Opening {
            max_severity: 2,
            informational_signature_prefixes: Vec::new(),
            informational_eve_categories: Vec::new(),
        }
    }
}

fn two() -> u32 {
    2
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Category {
    pub code: String,
    pub name: String,
    pub name_vi: String,
    /// Impacts implied by the category (for the serious-incident rule).
    #[serde(default)]
    pub impacts: Vec<String>,
    #[serde(default = "yes")]
    pub creates_incident: bool,
    /// `inbound` (the client attacks the server; the default) or
    /// `outbound` (an internal host talks to attacker infrastructure: the
    /// internal end is the victim, and its incidents group by victim).
    #[serde(default)]
    pub roles: Option<String>,
    /// Categories with the same episode join one incident (e.g. malware
    /// and command and control of one infected host); default: the code.
    #[serde(default)]
    pub episode: Option<String>,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MapRule {
    pub detector: Option<String>,
    pub signature_id_min: Option<u64>,
    pub signature_id_max: Option<u64>,
    pub technique_prefix: Option<String>,
    pub eve_category: Option<String>,
    pub indicator_matched: Option<String>,
    pub category: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPacks {
    version: u32,
    pack: Vec<RawPack>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPack {
    id: String,
    name: String,
    #[serde(default)]
    deadline: Vec<RawDeadline>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDeadline {
    id: String,
    description: String,
    applies: String,
    from: String,
    within: String,
    met_by: String,
}

#[derive(Debug, Clone)]
pub struct DeadlineRule {
    /// `pack/id`.
    pub id: String,
    pub pack: String,
    pub description: String,
    pub serious_only: bool,
    pub from: String,
    pub within: Duration,
    pub met_by: String,
}

/// Everything regulatory, validated.
#[derive(Debug, Clone)]
pub struct Regulation {
    pub assessment: Assessment,
    pub retention: Retention,
    pub serious: SeriousRule,
    pub reports: Reports,
    pub categories: Vec<Category>,
    pub map: Vec<MapRule>,
    pub default_category: String,
    pub opening: Opening,
    /// Detectors of the host sensor (their alerts concern the agent's host).
    pub host_detectors: Vec<String>,
    /// Deadlines of the active packs.
    pub deadlines: Vec<DeadlineRule>,
    pub packs: Vec<String>,
}

/// Where each data file comes from: a path, or the embedded default.
#[derive(Debug, Clone, Default)]
pub struct RegulationFiles {
    pub regulation: Option<std::path::PathBuf>,
    pub categories: Option<std::path::PathBuf>,
    pub rule_packs: Option<std::path::PathBuf>,
    /// Active packs; `None`: all packs of the file.
    pub active_packs: Option<Vec<String>>,
}

fn source(path: &Option<std::path::PathBuf>, default: &str, name: &str) -> Result<Source, ConfigError> {
    match path {
        Some(p) => Source::read(p),
        None => Ok(Source { file: Path::new("(embedded)").join(name), text: default.to_string() }),
    }
}

impl Regulation {
    pub fn embedded() -> Regulation {
        #[allow(clippy::expect_used)]
        Regulation::load(&RegulationFiles::default()).expect("the embedded regulation data is valid")
    }

    pub fn load(files: &RegulationFiles) -> Result<Regulation, ConfigError> {
        let src = source(&files.regulation, DEFAULT_REGULATION, "regulation.toml")?;
        let r: RawRegulation = src.parse()?;
        if r.version != 1 {
            return Err(src.error(Some("version"), format!("unsupported version {}", r.version)));
        }
        for (k, _) in r.assessment.level_months.iter().chain(r.retention.level_days.iter()) {
            if !matches!(k.as_str(), "1" | "2" | "3" | "4" | "5") {
                return Err(src.error(None, format!("invalid security level `{k}` (1 to 5)")));
            }
        }
        for level in 1..=5 {
            if !r.retention.level_days.contains_key(&level.to_string()) {
                return Err(src.error(Some("retention.level_days"), format!("level {level} is missing")));
            }
        }
        if r.retention.min_days < 30 {
            return Err(src.error(Some("retention.min_days"), "must be at least 30 (Circular 31/2017)"));
        }

        let csrc = source(&files.categories, DEFAULT_CATEGORIES, "incident_categories.toml")?;
        let c: RawCategories = csrc.parse()?;
        if c.version != 1 {
            return Err(csrc.error(Some("version"), format!("unsupported version {}", c.version)));
        }
        let known = |code: &str| c.category.iter().any(|x| x.code == code);
        if !known(&c.default_category) {
            return Err(
                csrc.error(Some("default_category"), format!("unknown category `{}`", c.default_category))
            );
        }
        for cat in &c.category {
            if let Some(r) = cat.roles.as_deref()
                && r != "inbound"
                && r != "outbound"
            {
                return Err(csrc.error(
                    Some("category.roles"),
                    format!("category `{}`: roles `{r}` is not `inbound` or `outbound`", cat.code),
                ));
            }
        }
        if !(1..=4).contains(&c.opening.max_severity) {
            return Err(csrc.error(Some("opening.max_severity"), "must be 1 to 4"));
        }
        for m in &c.map {
            if !known(&m.category) {
                return Err(csrc.error(Some("map.category"), format!("unknown category `{}`", m.category)));
            }
        }

        let psrc = source(&files.rule_packs, DEFAULT_RULE_PACKS, "rule_packs.toml")?;
        let p: RawPacks = psrc.parse()?;
        if p.version != 1 {
            return Err(psrc.error(Some("version"), format!("unsupported version {}", p.version)));
        }
        let active: Vec<String> = match &files.active_packs {
            Some(a) => a.clone(),
            None => p.pack.iter().map(|x| x.id.clone()).collect(),
        };
        for a in &active {
            if !p.pack.iter().any(|x| &x.id == a) {
                return Err(psrc.error(None, format!("unknown rule pack `{a}`")));
            }
        }
        let mut deadlines = Vec::new();
        for pack in p.pack.iter().filter(|x| active.contains(&x.id)) {
            let _ = &pack.name;
            for d in &pack.deadline {
                let field = |f: &str| format!("pack.deadline.{f} ({}/{})", pack.id, d.id);
                for (f, m) in [("from", &d.from), ("met_by", &d.met_by)] {
                    if !MILESTONES.contains(&m.as_str()) {
                        return Err(psrc.error(
                            Some(&field(f)),
                            format!("unknown milestone `{m}` (one of {})", MILESTONES.join(", ")),
                        ));
                    }
                }
                let serious_only = match d.applies.as_str() {
                    "all" => false,
                    "serious" => true,
                    other => {
                        return Err(psrc
                            .error(Some(&field("applies")), format!("`{other}` is not `all` or `serious`")));
                    }
                };
                let within = humantime::parse_duration(&d.within).map_err(|e| {
                    psrc.error(Some(&field("within")), format!("invalid duration `{}`: {e}", d.within))
                })?;
                deadlines.push(DeadlineRule {
                    id: format!("{}/{}", pack.id, d.id),
                    pack: pack.id.clone(),
                    description: d.description.clone(),
                    serious_only,
                    from: d.from.clone(),
                    within,
                    met_by: d.met_by.clone(),
                });
            }
        }
        Ok(Regulation {
            assessment: r.assessment,
            retention: r.retention,
            serious: r.serious,
            reports: r.reports,
            categories: c.category,
            map: c.map,
            default_category: c.default_category,
            opening: c.opening,
            host_detectors: c.host_detectors,
            deadlines,
            packs: active,
        })
    }

    pub fn category(&self, code: &str) -> Option<&Category> {
        self.categories.iter().find(|c| c.code == code)
    }

    /// How the endpoints of an alert of `category` read.
    pub fn direction(&self, category: &str) -> crate::incident::roles::Direction {
        match self.category(category).and_then(|c| c.roles.as_deref()) {
            Some("outbound") => crate::incident::roles::Direction::Outbound,
            _ => crate::incident::roles::Direction::Inbound,
        }
    }

    /// The episode family of a category.
    pub fn episode<'a>(&'a self, category: &'a str) -> &'a str {
        self.category(category).and_then(|c| c.episode.as_deref()).unwrap_or(category)
    }

    /// Whether a detector belongs to the host sensor.
    pub fn is_host_detector(&self, detector: &str) -> bool {
        self.host_detectors.iter().any(|d| d == detector)
    }

    /// Whether an alert of `category` may open an incident on its own:
    /// the category opens incidents, the severity is high enough and the
    /// rule is not informational.
    pub fn opens_incident(&self, category: &str, f: &RecordFacts, severity: u32) -> bool {
        if self.category(category).is_some_and(|c| !c.creates_incident) {
            return false;
        }
        if severity == 0 || severity > self.opening.max_severity {
            return false;
        }
        !self.opening.informational_signature_prefixes.iter().any(|p| f.signature.starts_with(p.as_str()))
            && !self.opening.informational_eve_categories.contains(&f.rule_category)
    }

    /// The category of an alert (first matching rule).
    pub fn categorize(&self, f: &RecordFacts) -> &str {
        let detector = Some(f.detector.as_str()).filter(|d| !d.is_empty()).unwrap_or("rule");
        let sid = f.signature_id;
        for m in &self.map {
            let ok = m.detector.as_deref().is_none_or(|d| d == detector)
                && m.technique_prefix.as_deref().is_none_or(|t| f.technique.starts_with(t))
                && m.indicator_matched.as_deref().is_none_or(|x| x == f.matched)
                && m.eve_category.as_deref().is_none_or(|c| c == f.rule_category)
                && m.signature_id_min.is_none_or(|min| sid != 0 && sid >= min)
                && m.signature_id_max.is_none_or(|max| sid != 0 && sid <= max);
            if ok {
                return &m.category;
            }
        }
        &self.default_category
    }

    /// Months between independent assessments of a system of `level`.
    pub fn assessment_months(&self, level: u32) -> u32 {
        self.assessment.level_months.get(&level.to_string()).copied().unwrap_or(self.assessment.agency_months)
    }

    /// Days records of an agency whose highest system level is `level`
    /// are kept (0: no systems, the level-1 period).
    pub fn retention_days(&self, level: u32) -> u32 {
        let days = self.retention.level_days.get(&level.max(1).to_string()).copied().unwrap_or(0);
        days.max(self.retention.min_days)
    }
}

/// Adds calendar months to a date (clamping the day to the month's end).
pub fn add_months(d: time::Date, months: u32) -> time::Date {
    let total = d.year() * 12 + (d.month() as i32 - 1) + months as i32;
    let (year, month0) = (total.div_euclid(12), total.rem_euclid(12));
    let month = time::Month::try_from(month0 as u8 + 1).unwrap_or(time::Month::January);
    let last = time::util::days_in_month(month, year);
    time::Date::from_calendar_date(year, month, d.day().min(last)).unwrap_or(d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn legacy(eve: &serde_json::Value) -> RecordFacts {
        crate::incident::facts::legacy(eve, &|_| false)
    }

    #[test]
    fn embedded_data_loads_and_maps() {
        let r = Regulation::embedded();
        assert_eq!(r.assessment_months(5), 6);
        assert_eq!(r.assessment_months(3), 12);
        assert_eq!(r.assessment_months(1), 24);
        assert_eq!(r.retention_days(1), 30);
        assert_eq!(r.retention_days(4), 180);
        assert_eq!(r.retention_days(0), 30);
        assert_eq!(r.deadlines.len(), 4);
        let scan = json!({"canhgac": {"detector": "portscan"}});
        assert_eq!(r.categorize(&legacy(&scan)), "scanning");
        let from = json!({"canhgac": {"detector": "ioc", "matched": "src_ip"}});
        assert_eq!(r.categorize(&legacy(&from)), "intrusion");
        let to = json!({"canhgac": {"detector": "ioc", "matched": "dns.query"}});
        assert_eq!(r.categorize(&legacy(&to)), "c2");
        assert_eq!(r.categorize(&legacy(&json!({}))), "other");
        assert!(!r.category("sensor_outage").unwrap().creates_incident);
        // host detectors
        for (detector, category) in [
            ("defacement", "defacement"),
            ("webshell", "intrusion"),
            ("auth-bruteforce", "intrusion"),
            ("auth-success-after-failures", "intrusion"),
            ("fim", "intrusion"),
            ("suspicious-process", "malware"),
        ] {
            assert_eq!(
                r.categorize(&legacy(&json!({"canhgac": {"detector": detector}}))),
                category,
                "{detector}"
            );
        }
        // signature rules: by technique, then by Suricata category
        let rule = |technique: &str, category: &str| json!({"canhgac": {"detector": "rule", "technique": technique}, "alert": {"category": category}});
        assert_eq!(r.categorize(&legacy(&rule("T1190", "Web Application Attack"))), "intrusion");
        assert_eq!(r.categorize(&legacy(&rule("T1071", "A Network Trojan was detected"))), "c2");
        assert_eq!(r.categorize(&legacy(&rule("T1595", "Detection of a Network Scan"))), "scanning");
        assert_eq!(r.categorize(&legacy(&rule("", "A Network Trojan was detected"))), "malware");
    }

    #[test]
    fn bad_data_is_rejected_with_the_field() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("packs.toml");
        std::fs::write(
            &p,
            "version = 1\n[[pack]]\nid = \"x\"\nname = \"x\"\n[[pack.deadline]]\nid = \"a\"\ndescription = \"\"\napplies = \"all\"\nfrom = \"detected\"\nwithin = \"5d\"\nmet_by = \"reported\"\n",
        )
        .unwrap();
        let e = Regulation::load(&RegulationFiles { rule_packs: Some(p), ..Default::default() }).unwrap_err();
        assert!(e.to_string().contains("unknown milestone `reported`"), "{e}");
        let e = Regulation::load(&RegulationFiles {
            active_packs: Some(vec!["1999".into()]),
            ..Default::default()
        })
        .unwrap_err();
        assert!(e.to_string().contains("unknown rule pack `1999`"), "{e}");
    }

    #[test]
    fn months() {
        let d = time::macros::date!(2025 - 08 - 31);
        assert_eq!(add_months(d, 6), time::macros::date!(2026 - 02 - 28));
        assert_eq!(add_months(d, 24), time::macros::date!(2027 - 08 - 31));
    }
}
