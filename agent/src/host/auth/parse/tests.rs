//! Real lines of many OpenSSH versions (written for canhgac from the
//! formats in OpenSSH's `auth.c`, `sshd.c`, `auth2.c`, `packet.c` and
//! `serverloop.c` from 3.x to 10.x) and of sudo, su, login and
//! shadow-utils.

use time::macros::datetime;

use super::*;
use crate::host::logfmt::{self, Clock, LogFormat};

fn feed(lines: &[&str]) -> Vec<AuthEvent> {
    let mut p = AuthParser::new(100);
    let clock = Clock::utc(datetime!(2026-11-23 12:00 UTC));
    let mut out = Vec::new();
    for l in lines {
        if let Some(e) = logfmt::parse(l, LogFormat::Auto, &clock) {
            p.feed(&e, e.ts.unwrap_or(clock.reference), &mut out);
        }
    }
    out
}

fn one(line: &str) -> AuthEvent {
    let mut v = feed(&[line]);
    assert_eq!(v.len(), 1, "{line}: {v:?}");
    v.remove(0)
}

fn summary(e: &AuthEvent) -> (Outcome, Option<&str>, Option<&str>, Option<u16>, u32) {
    (e.outcome, e.user.as_deref(), e.src.as_ref().map(|s| s.host.as_str()), e.src_port, e.attempts)
}

#[test]
#[allow(clippy::type_complexity)]
fn openssh_results_across_versions() {
    use Outcome::*;
    let cases: &[(&str, (Outcome, Option<&str>, Option<&str>, Option<u16>, u32))] = &[
        // OpenSSH 3.x-5.x (no port in some builds, ssh1)
        (
            "Jan  5 01:31:41 www sshd[1643]: Failed password for root from 10.0.0.5 port 4321 ssh1",
            (Failure, Some("root"), Some("10.0.0.5"), Some(4321), 1),
        ),
        (
            "Jan  5 01:31:41 www sshd[1644]: Illegal user test from 10.0.0.6",
            (Failure, Some("test"), Some("10.0.0.6"), None, 1),
        ),
        (
            "Jan  5 01:31:41 www sshd[1645]: Failed password for illegal user test from 10.0.0.7 port 22 ssh2",
            (Failure, Some("test"), Some("10.0.0.7"), Some(22), 1),
        ),
        // OpenSSH 6.x-7.x
        (
            "Mar 27 13:08:09 h sshd[1361]: Accepted publickey for ubuntu from 85.245.107.41 port 54259 ssh2: RSA SHA256:Kl8kPGZr",
            (Success, Some("ubuntu"), Some("85.245.107.41"), Some(54259), 0),
        ),
        (
            "Mar 27 13:08:09 h sshd[1362]: Accepted password for alice from 2001:db8::5 port 50000 ssh2",
            (Success, Some("alice"), Some("2001:db8::5"), Some(50000), 0),
        ),
        (
            "Mar 27 13:08:09 h sshd[1363]: Failed password for invalid user admin from 1.2.3.4 port 4444 ssh2",
            (Failure, Some("admin"), Some("1.2.3.4"), Some(4444), 1),
        ),
        (
            "Mar 27 13:08:09 h sshd[1364]: Failed keyboard-interactive/pam for root from 1.2.3.5 port 1 ssh2",
            (Failure, Some("root"), Some("1.2.3.5"), Some(1), 1),
        ),
        (
            "Mar 27 13:08:09 h sshd[1365]: error: maximum authentication attempts exceeded for root from 1.2.3.6 port 2 ssh2 [preauth]",
            (Failure, Some("root"), Some("1.2.3.6"), Some(2), 1),
        ),
        (
            "Mar 27 13:08:09 h sshd[1366]: Did not receive identification string from 1.2.3.7",
            (Failure, None, Some("1.2.3.7"), None, 0),
        ),
        // OpenSSH 7.4-8.x
        (
            "Nov 23 09:00:01 h sshd[2001]: Invalid user oracle from 203.0.113.9 port 40022",
            (Failure, Some("oracle"), Some("203.0.113.9"), Some(40022), 1),
        ),
        (
            "Nov 23 09:00:01 h sshd[2002]: Connection closed by invalid user oracle 203.0.113.9 port 40022 [preauth]",
            (Failure, Some("oracle"), Some("203.0.113.9"), Some(40022), 0),
        ),
        (
            "Nov 23 09:00:01 h sshd[2003]: Disconnected from authenticating user root 203.0.113.10 port 5 [preauth]",
            (Failure, Some("root"), Some("203.0.113.10"), Some(5), 0),
        ),
        (
            "Nov 23 09:00:01 h sshd[2004]: Received disconnect from 203.0.113.11 port 6:11: Bye Bye [preauth]",
            (Failure, None, Some("203.0.113.11"), Some(6), 0),
        ),
        (
            "Nov 23 09:00:01 h sshd[2005]: Unable to negotiate with 203.0.113.12 port 7: no matching key exchange method found. Their offer: diffie-hellman-group1-sha1 [preauth]",
            (Failure, None, Some("203.0.113.12"), Some(7), 0),
        ),
        (
            "Nov 23 09:00:01 h sshd[2006]: Accepted keyboard-interactive/pam for bob from ::ffff:198.51.100.3 port 9 ssh2",
            (Success, Some("bob"), Some("198.51.100.3"), Some(9), 0),
        ),
        // OpenSSH 9.x-10.x (sshd-session, sshd-auth)
        (
            "2026-11-23T09:15:02.123456+07:00 web01 sshd-session[3001]: Failed password for root from 192.0.2.50 port 51234 ssh2",
            (Failure, Some("root"), Some("192.0.2.50"), Some(51234), 1),
        ),
        (
            "2026-11-23T09:15:02.123456+07:00 web01 sshd-session[3002]: Invalid user test from 192.0.2.51 port 1",
            (Failure, Some("test"), Some("192.0.2.51"), Some(1), 1),
        ),
        (
            "2026-11-23T09:15:02.123456+07:00 web01 sshd-auth[3003]: Accepted password for deploy from 192.0.2.52 port 2 ssh2",
            (Success, Some("deploy"), Some("192.0.2.52"), Some(2), 0),
        ),
        (
            "2026-11-23T09:15:02.123456+07:00 web01 sshd-session[3004]: Timeout before authentication for 192.0.2.53 port 3",
            (Failure, None, Some("192.0.2.53"), Some(3), 0),
        ),
        // sshd -E (no header at all)
        (
            "Failed password for root from 10.78.1.2 port 40000 ssh2",
            (Failure, Some("root"), Some("10.78.1.2"), Some(40000), 1),
        ),
        // journal JSON
        (
            r#"{"__CURSOR":"c","__REALTIME_TIMESTAMP":"1763888100000000","_HOSTNAME":"web01","SYSLOG_IDENTIFIER":"sshd","_PID":"77","MESSAGE":"Failed password for admin from 192.0.2.60 port 3 ssh2"}"#,
            (Failure, Some("admin"), Some("192.0.2.60"), Some(3), 1),
        ),
        // RFC 5424
        (
            "<38>1 2026-11-23T09:00:00.000+07:00 web01 sshd 88 - - Failed password for x from 192.0.2.61 port 4 ssh2",
            (Failure, Some("x"), Some("192.0.2.61"), Some(4), 1),
        ),
        // a host name (UseDNS yes)
        (
            "Nov 23 09:00:01 h sshd[2010]: Failed password for root from scanner.example.net port 8 ssh2",
            (Failure, Some("root"), Some("scanner.example.net"), Some(8), 1),
        ),
    ];
    for (line, want) in cases {
        let e = one(line);
        assert_eq!(summary(&e), *want, "{line}");
    }
    // addresses: IPv4-mapped written as IPv4, names not in src_ip
    let e = one("Nov 23 09:00:01 h sshd[1]: Failed password for root from scanner.example.net port 8 ssh2");
    assert!(e.src.unwrap().ip.is_none());
}

#[test]
fn one_guess_is_counted_once_across_the_lines_that_log_it() {
    // Ubuntu: Invalid user, PAM check pass, PAM failure, Failed password
    let v = feed(&[
        "Nov 23 09:00:01 h sshd[10]: Invalid user admin from 1.2.3.4 port 5",
        "Nov 23 09:00:02 h sshd[10]: pam_unix(sshd:auth): check pass; user unknown",
        "Nov 23 09:00:02 h sshd[10]: pam_unix(sshd:auth): authentication failure; logname= uid=0 euid=0 tty=ssh ruser= rhost=1.2.3.4",
        "Nov 23 09:00:04 h sshd[10]: Failed password for invalid user admin from 1.2.3.4 port 5 ssh2",
        "Nov 23 09:00:06 h sshd[10]: Failed password for invalid user admin from 1.2.3.4 port 5 ssh2",
        "Nov 23 09:00:06 h sshd[10]: Connection closed by invalid user admin 1.2.3.4 port 5 [preauth]",
    ]);
    let guesses: u32 = v.iter().map(|e| e.attempts).sum();
    assert_eq!(guesses, 2, "{v:#?}");
    // rsyslog's repetition: five guesses
    let v = feed(&[
        "Mar 29 23:18:33 h sshd[6402]: message repeated 5 times: [ Failed password for root from 218.60.136.106 port 56338 ssh2]",
    ]);
    assert_eq!(v[0].attempts, 5);
    // a valid user: PAM failure then Failed password is one guess
    let v = feed(&[
        "Nov 23 09:00:02 h sshd[11]: pam_unix(sshd:auth): authentication failure; logname= uid=0 euid=0 tty=ssh ruser= rhost=1.2.3.4  user=root",
        "Nov 23 09:00:04 h sshd[11]: Failed password for root from 1.2.3.4 port 5 ssh2",
    ]);
    assert_eq!(v.iter().map(|e| e.attempts).sum::<u32>(), 1);
    // keys tried one after the other, then accepted: nothing failed
    let v = feed(&[
        "Nov 28 09:16:03 srv sshd[12]: Failed publickey for git from 192.0.2.1 port 57904 ssh2: ECDSA 0e:ff",
        "Nov 28 09:16:03 srv sshd[12]: Accepted publickey for git from 192.0.2.1 port 57904 ssh2: DSA 36:48",
    ]);
    assert_eq!(v.iter().filter(|e| e.outcome == Outcome::Failure).count(), 0);
}

#[test]
fn injected_user_names_do_not_move_the_source() {
    let e = one(
        "Nov 11 08:04:52 h sshd[2737]: Failed password for invalid user test from 10.10.1.2 port 55555 ssh2 from 127.0.0.1 port 58946 ssh2",
    );
    assert_eq!(e.src.unwrap().host, "127.0.0.1");
    let e = one(
        "Nov 11 08:04:52 h sshd[2738]: Failed password for invalid user test from 127.0.0.1 port 58946 ssh2: from 10.10.1.2 port 55555 ssh2",
    );
    assert_eq!(e.src.unwrap().host, "127.0.0.1");
}

#[test]
fn sudo_su_login_and_account_tools() {
    let e = one(
        "Mar 27 13:09:37 h sudo:   ubuntu : TTY=pts/0 ; PWD=/home/ubuntu ; USER=root ; COMMAND=/usr/bin/apt-get update",
    );
    assert_eq!(
        (e.service.as_str(), e.outcome, e.user.as_deref(), e.target_user.as_deref()),
        ("sudo", Outcome::Success, Some("ubuntu"), Some("root"))
    );
    assert_eq!(e.command.as_deref(), Some("/usr/bin/apt-get update"));
    let e = one(
        "Nov 23 10:00:00 h sudo:    alice : 3 incorrect password attempts ; TTY=pts/1 ; PWD=/home/alice ; USER=root ; COMMAND=/bin/bash",
    );
    assert_eq!((e.outcome, e.attempts, e.reason), (Outcome::Failure, 3, Some("bad_password")));
    let e = one(
        "Nov 23 10:00:00 h sudo:      eve : user NOT in sudoers ; TTY=pts/1 ; PWD=/tmp ; USER=root ; COMMAND=/bin/sh",
    );
    assert_eq!(e.reason, Some("not_in_sudoers"));
    let e = one("Nov 23 10:00:00 h su[900]: FAILED SU (to root) alice on pts/1");
    assert_eq!(
        (e.service.as_str(), e.outcome, e.target_user.as_deref()),
        ("su", Outcome::Failure, Some("root"))
    );
    let e = one("Nov 23 10:00:00 h su[901]: (to root) alice on pts/1");
    assert_eq!(e.outcome, Outcome::Success);
    let e = one(
        "Nov 23 10:00:00 h su[902]: pam_unix(su:auth): authentication failure; logname=alice uid=1000 euid=0 tty=/dev/pts/1 ruser=alice rhost=  user=root",
    );
    assert_eq!(
        (e.service.as_str(), e.user.as_deref(), e.target_user.as_deref()),
        ("su", Some("alice"), Some("root"))
    );
    let e = one("Nov 23 10:00:00 h login[903]: ROOT LOGIN  on '/dev/tty1'");
    assert_eq!((e.user.as_deref(), e.outcome), (Some("root"), Outcome::Success));
    let e = one(
        "Nov 23 10:00:00 h login[904]: FAILED LOGIN (1) on '/dev/tty1' FOR 'root', Authentication failure",
    );
    assert_eq!((e.user.as_deref(), e.outcome), (Some("root"), Outcome::Failure));
    let e = one(
        "Nov 23 10:00:00 h vsftpd[905]: pam_unix(vsftpd:auth): authentication failure; logname= uid=0 euid=0 tty=ftp ruser=anon rhost=198.51.100.9  user=ftpuser",
    );
    assert_eq!((e.service.as_str(), e.src.map(|s| s.host)), ("vsftpd", Some("198.51.100.9".into())));
    let accounts = [
        (
            "Nov 23 10:00:00 h useradd[1]: new user: name=bob, UID=0, GID=0, home=/home/bob, shell=/bin/bash, from=/dev/pts/0",
            "user_added",
            Some("bob"),
            None,
            Some(0),
        ),
        (
            "Nov 23 10:00:00 h useradd[1]: add 'bob' to group 'sudo'",
            "group_member_added",
            Some("bob"),
            Some("sudo"),
            None,
        ),
        (
            "Nov 23 10:00:00 h usermod[2]: add 'bob' to shadow group 'wheel'",
            "group_member_added",
            Some("bob"),
            Some("wheel"),
            None,
        ),
        (
            "Nov 23 10:00:00 h usermod[2]: change user 'bob' UID from '1001' to '0'",
            "uid_changed",
            Some("bob"),
            None,
            Some(0),
        ),
        (
            "Nov 23 10:00:00 h gpasswd[3]: user carol added by root to group adm",
            "group_member_added",
            Some("carol"),
            Some("adm"),
            None,
        ),
        (
            "Nov 23 10:00:00 h groupadd[4]: group added to /etc/group: name=ops, GID=1005",
            "group_added",
            None,
            Some("ops"),
            None,
        ),
        (
            "Nov 23 10:00:00 h passwd[5]: pam_unix(passwd:chauthtok): password changed for root",
            "password_changed",
            Some("root"),
            None,
            None,
        ),
        (
            "Nov 23 10:00:00 h chage[6]: changed password expiry for bob",
            "expiry_changed",
            Some("bob"),
            None,
            None,
        ),
        ("Nov 23 10:00:00 h userdel[7]: delete user 'bob'", "user_deleted", Some("bob"), None, None),
    ];
    for (line, action, user, group, uid) in accounts {
        let e = one(line);
        let a = e.account.unwrap_or_else(|| panic!("{line}"));
        assert_eq!(
            (a.action, a.user.as_deref(), a.group.as_deref(), a.uid),
            (action, user, group, uid),
            "{line}"
        );
    }
}

/// Feeds lines, returning the events and the parser's unparsed count.
fn feed_counted(lines: &[&str]) -> (Vec<AuthEvent>, u64) {
    let mut p = AuthParser::new(100);
    let clock = Clock::utc(datetime!(2026-11-23 12:00 UTC));
    let mut out = Vec::new();
    for l in lines {
        if let Some(e) = logfmt::parse(l, LogFormat::Auto, &clock) {
            p.feed(&e, e.ts.unwrap_or(clock.reference), &mut out);
        }
    }
    (out, p.stats.unparsed)
}

/// RHEL/CentOS 4-5 era PAM (`sshd(pam_unix)[PID]:`, `(pam_unix) ...`):
/// every authentication failure is one failure event; a host name in
/// `rhost=` is a host, not an address; `check pass; user unknown` and
/// sessions carry no event and are not unparsed.
#[test]
fn old_pam_lines() {
    let e = one(
        "Jun 14 15:16:01 combo sshd(pam_unix)[19939]: authentication failure; logname= uid=0 euid=0 tty=NODEVssh ruser= rhost=218.188.2.4 ",
    );
    assert_eq!(summary(&e), (Outcome::Failure, None, Some("218.188.2.4"), None, 1));
    assert_eq!((e.service.as_str(), e.reason, e.pid), ("sshd", Some("bad_password"), Some(19939)));
    let e = one(
        "Jun 15 02:04:59 combo sshd(pam_unix)[20882]: authentication failure; logname= uid=0 euid=0 tty=NODEVssh ruser= rhost=220-135-151-1.hinet-ip.hinet.net  user=root",
    );
    assert_eq!(
        summary(&e),
        (Outcome::Failure, Some("root"), Some("220-135-151-1.hinet-ip.hinet.net"), None, 1)
    );
    assert_eq!(e.src.as_ref().and_then(|s| s.ip), None);
    // fail2ban's pam-generic forms: the module in front of the message
    let e = one(
        "May 12 09:47:54 vaio sshd[16004]: (pam_unix) authentication failure; logname= uid=0 euid=0 tty=ssh ruser= rhost=71-13-115-12.static.mdsn.wi.charter.com  user=root",
    );
    assert_eq!(summary(&e).2, Some("71-13-115-12.static.mdsn.wi.charter.com"));
    let e = one(
        "May 15 18:02:12 localhost proftpd: (pam_unix) authentication failure; logname= uid=0 euid=0 tty= ruser= rhost=66.232.129.62  user=mark",
    );
    assert_eq!((e.service.as_str(), e.user.as_deref(), e.attempts), ("proftpd", Some("mark"), 1));
    let e = one(
        "Nov 25 17:12:13 webmail pop(pam_unix)[4920]: authentication failure; logname= uid=0 euid=0 tty= ruser= rhost=192.168.10.3 user=mailuser",
    );
    assert_eq!((e.service.as_str(), summary(&e).2), ("pop", Some("192.168.10.3")));
    let e = one(
        "Jun 18 02:08:10 combo su(pam_unix)[21416]: authentication failure; logname=alice uid=500 euid=0 tty= ruser=alice rhost=  user=root",
    );
    assert_eq!(
        (e.service.as_str(), e.user.as_deref(), e.target_user.as_deref(), e.src.is_none()),
        ("su", Some("alice"), Some("root"), true)
    );
    let e = one("Jun 18 02:08:10 combo passwd(pam_unix)[21417]: password changed for bob");
    assert_eq!(e.account.map(|a| a.action), Some("password_changed"));
    let (ev, unparsed) = feed_counted(&[
        "Jun 14 15:16:02 combo sshd(pam_unix)[19937]: check pass; user unknown",
        "Jun 15 04:06:18 combo su(pam_unix)[21416]: session opened for user cyrus by (uid=0)",
        "Jun 15 04:06:19 combo su(pam_unix)[21416]: session closed for user cyrus",
        "Jun 17 19:43:13 combo sshd(pam_unix)[30565]: session opened for user test by (uid=509)",
        "Jul 10 16:01:43 combo login(pam_unix)[2051]: check pass; user unknown",
    ]);
    assert!(ev.is_empty(), "{ev:?}");
    assert_eq!(unparsed, 0);
    // the same attempt from PAM and from sshd: one guess
    let ev = feed(&[
        "Jan 23 05:28:17 combo sshd(pam_unix)[28534]: authentication failure; logname= uid=0 euid=0 tty=NODEVssh ruser= rhost=62.26.66.134  user=root",
        "Jan 23 05:28:18 combo sshd[28534]: Failed password for root from ::ffff:62.26.66.134 port 57203 ssh2",
        "Jan 23 05:28:20 combo sshd[28534]: Failed password for root from ::ffff:62.26.66.134 port 57203 ssh2",
    ]);
    let attempts: Vec<u32> = ev.iter().map(|e| e.attempts).collect();
    assert_eq!(attempts, vec![1, 0, 1], "{ev:?}");
    assert!(ev.iter().all(|e| summary(e).2 == Some("62.26.66.134")));
}

/// vsftpd, proftpd and pure-ftpd logins.
#[test]
fn ftp_servers() {
    let e = one("Jan 29 14:59:32 h vsftpd[12345]: [bob] FAIL LOGIN: Client \"::ffff:192.0.2.7\"");
    assert_eq!(summary(&e), (Outcome::Failure, Some("bob"), Some("192.0.2.7"), None, 1));
    let e = one("Jan 29 14:59:33 h vsftpd[12346]: [pid 12346] [bob] OK LOGIN: Client \"192.0.2.7\"");
    assert_eq!(summary(&e), (Outcome::Success, Some("bob"), Some("192.0.2.7"), None, 0));
    let e = one(
        "Jan 10 00:00:00 ftp proftpd[2344]: ftp.example.com (203.0.113.9[203.0.113.9]) - USER bob (Login failed): Incorrect password.",
    );
    assert_eq!(summary(&e), (Outcome::Failure, Some("bob"), Some("203.0.113.9"), None, 1));
    let e = one(
        "Jan 10 00:00:00 ftp proftpd[2345]: ftp.example.com (scanner.example[203.0.113.9]) - USER admin: no such user found from scanner.example [203.0.113.9] to 10.0.0.1:21",
    );
    assert_eq!((e.reason, e.user.as_deref()), (Some("invalid_user"), Some("admin")));
    let e = one(
        "Jan 10 00:00:00 ftp proftpd[2346]: ftp.example.com (203.0.113.9[203.0.113.9]) - SECURITY VIOLATION: root login attempted.",
    );
    assert_eq!((e.reason, e.user.as_deref()), (Some("root_refused"), Some("root")));
    let e = one(
        "Jan 10 00:00:00 ftp proftpd[2347]: ftp.example.com (203.0.113.9[203.0.113.9]) - Maximum login attempts (3) exceeded",
    );
    assert_eq!((e.reason, e.attempts), (Some("too_many_failures"), 0));
    let e = one(
        "Jan 10 00:00:00 ftp proftpd[2348]: ftp.example.com (198.51.100.2[198.51.100.2]) - USER alice: Login successful.",
    );
    assert_eq!(summary(&e), (Outcome::Success, Some("alice"), Some("198.51.100.2"), None, 0));
    // vsftpd's own log file
    let e = one("Sat Dec  6 07:30:17 2025 [pid 2417] [bob] FAIL LOGIN: Client \"192.0.2.8\"");
    assert_eq!(summary(&e), (Outcome::Failure, Some("bob"), Some("192.0.2.8"), None, 1));
    assert_eq!((e.program.as_str(), e.pid, e.ts), ("vsftpd", Some(2417), datetime!(2025-12-06 07:30:17 UTC)));
    let e =
        one("Sat Dec  6 07:30:19 2025 [pid 2419] [ftp] OK LOGIN: Client \"192.0.2.8\", anon password \"?\"");
    assert_eq!(summary(&e), (Outcome::Success, Some("ftp"), Some("192.0.2.8"), None, 0));
    let e =
        one("Jan 10 00:00:00 ftp pure-ftpd: (?@203.0.113.9) [WARNING] Authentication failed for user [bob]");
    assert_eq!(summary(&e), (Outcome::Failure, Some("bob"), Some("203.0.113.9"), None, 1));
    let e = one("Jan 10 00:00:00 ftp pure-ftpd: (?@198.51.100.2) [INFO] alice is now logged in");
    assert_eq!(summary(&e), (Outcome::Success, Some("alice"), Some("198.51.100.2"), None, 0));
    let (ev, unparsed) = feed_counted(&[
        "Jan 29 14:59:30 h vsftpd[12345]: CONNECT: Client \"192.0.2.7\"",
        "Sat Dec  6 07:30:16 2025 [pid 2416] CONNECT: Client \"192.0.2.8\"",
        "Jan 10 00:00:00 ftp proftpd[2344]: ftp.example.com (203.0.113.9[203.0.113.9]) - FTP session opened.",
    ]);
    assert!(ev.is_empty() && unparsed == 0, "{ev:?} {unparsed}");
}

/// A line of a program we interpret that yields no event and is not a
/// message known to carry none is counted, never silently accepted; lines
/// of other programs are not ours to count.
#[test]
fn lines_not_understood_are_counted() {
    let (ev, unparsed) = feed_counted(&[
        "Nov 23 10:00:00 h sshd[1]: Server listening on 0.0.0.0 port 22.",
        "Nov 23 10:00:00 h sshd[2]: pam_unix(sshd:session): session opened for user alice by (uid=0)",
        "Nov 23 10:00:00 h sshd[3]: reverse mapping checking getaddrinfo for x.example [192.0.2.1] failed - POSSIBLE BREAK-IN ATTEMPT!",
        "Nov 23 10:00:00 h sshd[4]: Received signal 15; terminating.",
        "Nov 23 10:00:00 h cron[5]: (root) CMD (run-parts /etc/cron.hourly)",
        "Nov 23 10:00:00 h sshd[6]: Frobnicated the quux for 198.51.100.1",
        "Nov 23 10:00:00 h sshd[7]: Failed password for",
        "Nov 23 10:00:00 h sudo[8]: something sudo never said",
        "Nov 23 10:00:00 h sshd(pam_unix)[9]: something unheard of",
    ]);
    assert!(ev.is_empty(), "{ev:?}");
    assert_eq!(unparsed, 4);
    // OpenSSH 3.x: a version scanner is a probe
    let e = one(
        "Jan  5 01:31:41 www sshd[1700]: scanned from 192.0.2.66 with SSH-1.0-SSH_Version_Mapper.  Don't panic.",
    );
    assert_eq!((e.reason, summary(&e).2), (Some("protocol_error"), Some("192.0.2.66")));
}

#[test]
fn garbage_never_panics_and_yields_nothing() {
    let junk = [
        "",
        "sshd[1]:",
        "Failed ",
        "Failed password for",
        "Failed password for x from",
        "Invalid user ",
        "Received disconnect from ",
        "Connection closed by ",
        "message repeated 99999999999 times: [ x",
        "pam_unix(:auth): authentication failure;",
        "\u{0}\u{1}\u{2}",
        "Disconnecting ",
        "User  not allowed because ",
    ];
    for j in junk {
        let _ = feed(&[j, &format!("Nov 23 10:00:00 h sshd[1]: {j}")]);
    }
    assert!(feed(&["Nov 23 10:00:00 h cron[1]: (root) CMD (run-parts /etc/cron.hourly)"]).is_empty());
}
