use time::macros::datetime;

use super::*;
use crate::host::auth::{AuthDetectConfig, AuthPipeline};

const NOW: OffsetDateTime = datetime!(2026-12-06 12:00:00 UTC);

/// NXLog `im_msvistalog` → `om_json` (the field names of NXLog's
/// documentation, "Windows Event Log" / "JSON" output examples).
fn nxlog_4625(i: u32, user: &str, ip: &str) -> String {
    format!(
        r#"{{"EventTime":"2026-12-06 10:00:{i:02}","Hostname":"DC01.example.local","Keywords":-9218868437227405312,"EventType":"AUDIT_FAILURE","SeverityValue":4,"Severity":"ERROR","EventID":4625,"SourceName":"Microsoft-Windows-Security-Auditing","ProviderGuid":"{{54849625-5478-4994-A5BA-3E3B0328C30D}}","Version":0,"Task":12544,"OpcodeValue":0,"RecordNumber":{i},"ProcessID":612,"ThreadID":3240,"Channel":"Security","Category":"Logon","Opcode":"Info","SubjectUserSid":"S-1-0-0","SubjectUserName":"-","SubjectDomainName":"-","SubjectLogonId":"0x0","TargetUserSid":"S-1-0-0","TargetUserName":"{user}","TargetDomainName":"","Status":"0xc000006d","FailureReason":"%%2313","SubStatus":"0xc000006a","LogonType":"3","LogonProcessName":"NtLmSsp ","AuthenticationPackageName":"NTLM","WorkstationName":"KALI","IpAddress":"{ip}","IpPort":"0","EventReceivedTime":"2026-12-06 10:00:{i:02}","SourceModuleName":"eventlog","SourceModuleType":"im_msvistalog"}}"#
    )
}

fn run(lines: &[String]) -> (Vec<serde_json::Value>, WindowsPipeline, AuthPipeline) {
    let mut auth = AuthPipeline::new(AuthDetectConfig::default(), true, &[]);
    let mut win = WindowsPipeline::default();
    let mut out = Output::default();
    let origin = LogOrigin { kind: "windows", sender: Some("10.0.0.20".parse().unwrap()), system: Some(3) };
    for l in lines {
        win.line(l, None, NOW, UtcOffset::UTC, "syslog", &origin, &mut auth, &mut out);
    }
    let v = out.records.iter().map(|r| serde_json::from_slice(&r.eve_json).unwrap()).collect();
    (v, win, auth)
}

fn alerts(v: &[serde_json::Value]) -> Vec<&serde_json::Value> {
    v.iter().filter(|r| r["event_type"] == "alert").collect()
}

#[test]
fn nxlog_logon_failures_are_a_brute_force_from_their_address() {
    let lines: Vec<String> = (0..6).map(|i| nxlog_4625(i, "administrator", "203.0.113.50")).collect();
    let (v, win, _) = run(&lines);
    let a = alerts(&v);
    assert_eq!(a.len(), 1, "{a:?}");
    assert_eq!(a[0]["canhgac"]["detector"], "auth-bruteforce");
    assert_eq!(a[0]["src_ip"], "203.0.113.50");
    assert_eq!(a[0]["canhgac"]["source"], "windows");
    assert_eq!(a[0]["canhgac"]["sender"], "10.0.0.20");
    assert_eq!(a[0]["canhgac"]["system"], 3);
    assert_eq!(a[0]["canhgac"]["log_host"], "DC01.example.local");
    let ev = v.iter().find(|r| r["event_type"] == "auth").unwrap();
    assert_eq!(ev["auth"]["outcome"], "failure");
    assert_eq!(ev["auth"]["method"], "network");
    assert_eq!(ev["auth"]["reason"], "bad_password");
    assert_eq!(ev["auth"]["user"], "administrator");
    assert_eq!(ev["timestamp"], "2026-12-06T10:00:00.000000+0000");
    assert_eq!((win.stats.events, win.stats.unparsed), (6, 0));
}

#[test]
fn winlogbeat_spray_then_success_after_failures() {
    // Winlogbeat 8 (ECS): event.code, winlog.event_data
    let wlb = |id: u32, user: &str, t: u32| {
        format!(
            r#"{{"@timestamp":"2026-12-06T03:00:{t:02}.123Z","event":{{"code":"{id}","kind":"event","provider":"Microsoft-Windows-Security-Auditing","outcome":"{}"}},"winlog":{{"channel":"Security","computer_name":"WS01.example.local","event_id":"{id}","provider_name":"Microsoft-Windows-Security-Auditing","event_data":{{"TargetUserName":"{user}","TargetDomainName":"EXAMPLE","LogonType":"10","IpAddress":"198.51.100.20","IpPort":"51234","SubStatus":"0xc000006a","Status":"0xc000006d"}}}},"host":{{"name":"ws01"}}}}"#,
            if id == 4625 { "failure" } else { "success" }
        )
    };
    let mut lines: Vec<String> = (0..10).map(|i| wlb(4625, &format!("user{i}"), i)).collect();
    lines.push(wlb(4624, "user3", 30));
    let (v, _, _) = run(&lines);
    let detectors: Vec<&str> =
        alerts(&v).iter().map(|a| a["canhgac"]["detector"].as_str().unwrap()).collect();
    assert_eq!(detectors, ["auth-bruteforce", "auth-spray", "auth-success-after-failures"], "{v:?}");
    let ev = v.iter().find(|r| r["event_type"] == "auth").unwrap();
    assert_eq!(ev["auth"]["user"], "EXAMPLE\\user0");
    assert_eq!(ev["auth"]["method"], "remote-interactive");
    assert_eq!(ev["src_port"], 51234);
}

#[test]
fn privileged_group_additions_log_clearing_and_services() {
    let lines = vec![
        // 4732: a member added to the local Administrators group (case as Windows writes it)
        r#"{"EventTime":"2026-12-06 10:05:00","Hostname":"SRV01","EventID":4732,"SourceName":"Microsoft-Windows-Security-Auditing","MemberName":"-","MemberSid":"S-1-5-21-1-2-3-1001","TargetUserName":"administrators","TargetDomainName":"Builtin","SubjectUserName":"eve","SubjectDomainName":"SRV01"}"#.to_string(),
        // 4728: Domain Admins, the member as a DN
        r#"{"EventTime":"2026-12-06 10:05:01","Hostname":"DC01","EventID":4728,"MemberName":"CN=Mallory,OU=Staff,DC=example,DC=local","TargetUserName":"Domain Admins","SubjectUserName":"eve"}"#.to_string(),
        // 4728 to an ordinary group: nothing
        r#"{"EventTime":"2026-12-06 10:05:02","Hostname":"DC01","EventID":4728,"MemberName":"CN=Bob","TargetUserName":"Accounting","SubjectUserName":"eve"}"#.to_string(),
        r#"{"EventTime":"2026-12-06 10:06:00","Hostname":"DC01","EventID":1102,"SourceName":"Microsoft-Windows-Eventlog","SubjectUserName":"eve","SubjectDomainName":"EXAMPLE"}"#.to_string(),
        r#"{"EventTime":"2026-12-06 10:07:00","Hostname":"SRV01","EventID":7045,"SourceName":"Service Control Manager","Channel":"System","ServiceName":"PSEXESVC","ImagePath":"%SystemRoot%\\PSEXESVC.exe","ServiceType":"user mode service","StartType":"demand start","AccountName":"LocalSystem"}"#.to_string(),
        r#"{"EventTime":"2026-12-06 10:07:01","Hostname":"SRV01","EventID":7045,"ServiceName":"updater","ImagePath":"cmd.exe /c powershell -enc SQBFAFgA","AccountName":"LocalSystem"}"#.to_string(),
        r#"{"EventTime":"2026-12-06 10:08:00","Hostname":"SRV01","EventID":4720,"TargetUserName":"backdoor","SubjectUserName":"eve"}"#.to_string(),
        r#"{"EventTime":"2026-12-06 10:08:00","Hostname":"SRV01","EventID":4688,"NewProcessName":"C:\\x.exe"}"#.to_string(),
        r#"{"no":"event id"}"#.to_string(),
        "{not json".to_string(),
    ];
    let (v, win, _) = run(&lines);
    let a = alerts(&v);
    let det: Vec<(&str, &str)> = a
        .iter()
        .map(|a| (a["canhgac"]["detector"].as_str().unwrap(), a["alert"]["signature"].as_str().unwrap()))
        .collect();
    assert_eq!(det.len(), 5, "{det:?}");
    assert_eq!(det[0].0, "privileged-account-change");
    assert!(det[0].1.contains("S-1-5-21-1-2-3-1001 → Administrators"), "{}", det[0].1);
    assert!(det[1].1.contains("Mallory → Domain Admins"), "{}", det[1].1);
    assert_eq!(det[2].0, "windows-log-cleared");
    assert_eq!(a[2]["alert"]["severity"], 1);
    assert_eq!(a[2]["canhgac"]["source"], "windows");
    assert_eq!((det[3].0, a[3]["alert"]["severity"].as_u64()), ("windows-service-installed", Some(3)));
    assert_eq!(a[4]["alert"]["severity"], 2);
    assert_eq!(a[4]["canhgac"]["suspicious"], true);
    assert_eq!((win.stats.other, win.stats.unparsed), (1, 1));
}

#[test]
fn rfc5424_structured_data_and_json_in_syslog() {
    // NXLog `to_syslog_ietf()`: the event's fields in the NXLOG structured data
    let line = r#"<14>1 2026-12-06T10:00:00+07:00 DC01.example.local Microsoft-Windows-Security-Auditing 612 - [NXLOG@14506 EventReceivedTime="2026-12-06 10:00:01" SourceModuleName="eventlog" SourceModuleType="im_msvistalog" EventID="4625" TargetUserName="admin" TargetDomainName="" LogonType="3" IpAddress="203.0.113.51" IpPort="0" SubStatus="0xc0000064" Note="a \"quoted\" \] value"] An account failed to log on."#;
    let WinParsed::Event(e) = parse_line(line, None, UtcOffset::UTC) else { panic!() };
    assert_eq!((e.id, e.host.as_deref()), (4625, Some("DC01.example.local")));
    assert_eq!(e.ts, Some(datetime!(2026-12-06 03:00:00 UTC)));
    assert_eq!(e.fields["Note"], "a \"quoted\" ] value");
    let Converted::Auth(a) = convert(&e, NOW, "s", &LogOrigin::of("windows")) else { panic!() };
    assert_eq!((a.reason, a.src.unwrap().host.as_str()), (Some("invalid_user"), "203.0.113.51"));
    // JSON in the message of an RFC 3164 line (`nxlog: {...}`)
    let raw = format!("<13>Dec  6 10:00:00 DC01 nxlog: {}", nxlog_4625(1, "x", "203.0.113.52"));
    let entry = crate::host::logfmt::parse(
        &raw,
        crate::host::logfmt::LogFormat::Auto,
        &crate::host::logfmt::Clock::utc(NOW),
    )
    .unwrap();
    let WinParsed::Event(e) = parse_line(&raw, Some(&entry), UtcOffset::UTC) else { panic!() };
    assert_eq!(e.id, 4625);
    // a 5424 message that is not a Windows event, and damaged structured data
    assert_eq!(
        parse_line("<14>1 2026-12-06T10:00:00Z h app - - - hello", None, UtcOffset::UTC),
        WinParsed::NotWindows
    );
    assert_eq!(
        parse_line("<14>1 2026-12-06T10:00:00Z h app - - [x EventID=\"4625", None, UtcOffset::UTC),
        WinParsed::NotWindows
    );
    // loopback failures have no remote source
    let l = nxlog_4625(1, "x", "::1");
    let WinParsed::Event(e) = parse_line(&l, None, UtcOffset::UTC) else { panic!() };
    let Converted::Auth(a) = convert(&e, NOW, "s", &LogOrigin::of("windows")) else { panic!() };
    assert!(a.src.is_none());
}

#[test]
fn alerts_of_events_received_over_syslog_name_the_windows_host_as_victim() {
    let mut auth = AuthPipeline::new(AuthDetectConfig::default(), false, &[]);
    let mut win = WindowsPipeline::default();
    let mut out = Output::default();
    let origin = LogOrigin { kind: "windows", sender: Some("10.0.0.20".parse().unwrap()), system: Some(3) };
    for i in 0..5 {
        win.line(
            &nxlog_4625(i, "admin", "203.0.113.50"),
            None,
            NOW,
            UtcOffset::UTC,
            "syslog",
            &origin,
            &mut auth,
            &mut out,
        );
    }
    let facts = out.records[0].facts.clone().unwrap();
    assert!(!facts.on_host);
    assert_eq!(facts.system, 3);
    assert_eq!(facts.attackers[0].ip, "203.0.113.50");
    assert_eq!(facts.victims[0].host, "dc01.example.local");
}
