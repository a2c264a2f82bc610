//! The operator console in a real browser: Debian's `chromium`, headless,
//! driven through `chromedriver` (WebDriver) with fantoccini, against a
//! running collector fed by real agents. Screenshots are kept under
//! `target/console-screenshots/`.

use std::{
    io::Write as _,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};

use canhgac_tests::{bin, free_port, wait_for};
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};

use crate::supervision::{scan_at, two_agencies_with};

/// Sets an operator's console password through the CLI (standard input).
fn passwd(profile: &Path, name: &str, password: &str) {
    let mut child = Command::new(bin("canhgac"))
        .arg("--profile")
        .arg(profile)
        .args(["operator", "passwd", name])
        .env_remove("CANHGAC_PROFILE")
        .env_remove("CANHGAC_COLLECTOR")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(format!("{password}\n").as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "passwd {name}: {}", String::from_utf8_lossy(&out.stderr));
}

/// Adds an `agency` operator of `agency`; the path of its profile.
fn agency_operator(c: &canhgac_tests::Collector, dir: &Path, name: &str, agency: &str) -> PathBuf {
    let profile = dir.join(format!("{name}.profile"));
    c.cli(&[
        "operator",
        "add",
        "--name",
        name,
        "--role",
        "agency",
        "--agency",
        agency,
        "--out",
        profile.to_str().unwrap(),
    ]);
    profile
}

struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn tool(name: &str) -> PathBuf {
    let path = PathBuf::from("/usr/bin").join(name);
    assert!(
        path.exists(),
        "{} is missing: the browser tests need Debian's chromium and chromium-driver (`.ci/run` installs them)",
        path.display()
    );
    path
}

async fn browser(port: u16) -> Client {
    let caps = json!({
        "goog:chromeOptions": {
            "binary": "/usr/bin/chromium",
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--ignore-certificate-errors", "--window-size=1280,1000", "--lang=vi"]
        }
    });
    let caps = match caps {
        Value::Object(m) => m,
        _ => unreachable!(),
    };
    let connector = hyper_util::client::legacy::connect::HttpConnector::new();
    let url = format!("http://127.0.0.1:{port}");
    let mut last = None;
    for _ in 0..150 {
        match ClientBuilder::new(connector.clone()).capabilities(caps.clone()).connect(&url).await {
            Ok(c) => return c,
            Err(e) => last = Some(e),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("cannot start chromium through chromedriver: {last:?}");
}

fn shots() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let target = exe.ancestors().find(|p| p.ends_with("target")).map(Path::to_path_buf);
    let dir = target.unwrap_or_else(std::env::temp_dir).join("console-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

async fn shot(b: &Client, name: &str) {
    let png = b.screenshot().await.unwrap();
    std::fs::write(shots().join(format!("{name}.png")), png).unwrap();
}

/// The text of the element `css` selects, waiting up to 20 s for it (a
/// click's navigation may still be under way, which can also make an
/// element found on the old page stale: then it is looked up again).
async fn text(b: &Client, css: &str) -> String {
    let mut last = String::new();
    for _ in 0..200 {
        match b.find(Locator::Css(css)).await {
            Ok(e) => match e.text().await {
                Ok(t) => return t,
                Err(err) => last = err.to_string(),
            },
            Err(err) => last = err.to_string(),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let page = b.source().await.unwrap_or_default();
    panic!("{css}: {last}\n{page}")
}

/// Waits until the text of `css` is `want` (after a click that reloads the
/// same page).
async fn text_becomes(b: &Client, css: &str, want: &str) {
    for _ in 0..200 {
        if let Ok(e) = b.find(Locator::Css(css)).await
            && e.text().await.is_ok_and(|t| t == want)
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{css} never became `{want}`: {}", text(b, css).await);
}

/// Signs in through the form and waits for the answer: the overview
/// (`#operator`) or the form again with its error (`#error`); the fresh
/// form has neither.
async fn sign_in(b: &Client, base: &str, user: &str, password: &str) {
    b.goto(&format!("{base}/login")).await.unwrap();
    b.find(Locator::Id("username")).await.unwrap().send_keys(user).await.unwrap();
    b.find(Locator::Id("password")).await.unwrap().send_keys(password).await.unwrap();
    b.find(Locator::Id("signin")).await.unwrap().click().await.unwrap();
    for _ in 0..200 {
        if b.find(Locator::Css("#operator, #error")).await.is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("no answer to the sign-in of {user}: {}", b.source().await.unwrap_or_default());
}

/// Fetches `url` from the page (the session's cookie goes with it):
/// (length, first five bytes as text).
async fn fetch_head(b: &Client, url: &str) -> (u64, String) {
    let r = b
        .execute_async(
            "const done = arguments[arguments.length - 1];
             fetch(arguments[0]).then(r => r.arrayBuffer()).then(buf => {
               const b = new Uint8Array(buf);
               done([b.length, String.fromCharCode(...b.slice(0, 5))]);
             }).catch(e => done([0, String(e)]));",
            vec![json!(url)],
        )
        .await
        .unwrap();
    (r[0].as_u64().unwrap_or(0), r[1].as_str().unwrap_or_default().to_string())
}

/// Runs `js` in the page (fills a form, clicks).
async fn js(b: &Client, js: &str) {
    b.execute(js, vec![]).await.unwrap();
}

async fn sign_out(b: &Client, base: &str) {
    b.goto(&format!("{base}/")).await.unwrap();
    b.wait().for_element(Locator::Id("signout")).await.unwrap().click().await.unwrap();
    b.wait().for_element(Locator::Id("signin")).await.unwrap();
}

/// Sign-in, the overview with real data, an incident moved to its next
/// state, a weekly report (HTML in the page, PDF fetched by the page), and
/// the refusals: a wrong password, a forged CSRF token, another agency's
/// incident, and the lock-out after five failures. Every one is audited.
#[test]
fn the_console_in_a_real_browser() {
    let chromedriver = tool("chromedriver");
    tool("chromium");
    let tmp = tempfile::tempdir().unwrap();
    let console_port = free_port();
    // agents silent 2 s after they stop: the replay agents show as silent
    let config = format!(
        "[telemetry]\nheartbeat_interval = \"1s\"\n[supervision]\nagent_silence_limit = \"2s\"\n[console]\nlisten = \"127.0.0.1:{console_port}\"\n\
         [reports]\ncheck_interval = \"1s\"\n[[reports.schedule]]\nkind = \"daily\"\nformats = [\"html\", \"pdf\"]\n"
    );
    let (c, mut agents, sa, _sb) = two_agencies_with(tmp.path(), &config);
    passwd(&c.profile(), "admin", "mật-khẩu-quản-trị-1");
    agency_operator(&c, tmp.path(), "op-a", "SO-A");
    passwd(&c.profile(), "op-a", "password-of-agency-a");
    let incidents: Vec<Value> =
        c.cli(&["incidents", "list", "--json"]).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let id_of = |agency: &str| {
        incidents.iter().find(|i| i["agency"] == agency).unwrap()["id"].as_u64().unwrap().to_string()
    };
    let (inc_a, inc_b) = (id_of("SO-A"), id_of("SO-B"));
    wait_for("both replay agents silent", Duration::from_secs(30), || {
        let cov = c.cli(&["coverage", "--json"]);
        let offline = cov
            .lines()
            .filter(|l| l.contains("\"type\":\"agent\"") && l.contains("\"online\":false"))
            .count();
        (offline == 2).then_some(())
    });

    let driver_port = free_port();
    let _driver = Driver(
        Command::new(chromedriver)
            .arg(format!("--port={driver_port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let base = format!("https://127.0.0.1:{console_port}");
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let b = browser(driver_port).await;

        // a wrong password: refused, nothing signed in
        sign_in(&b, &base, "admin", "not the password").await;
        assert!(text(&b, "#error").await.contains("wrong user name or password"));
        shot(&b, "01-wrong-password").await;

        // the overview, within one screen
        sign_in(&b, &base, "admin", "mật-khẩu-quản-trị-1").await;
        assert_eq!(text(&b, "#operator").await, "admin");
        assert_eq!(b.current_url().await.unwrap().path(), "/");
        let silent = text(&b, "#silent").await;
        assert!(
            silent.contains("SO-A") && silent.contains("SO-B"),
            "the replay agents have exited: {silent}"
        );
        assert!(text(&b, "#alerts24h").await.contains("ioc"), "{}", text(&b, "#alerts24h").await);
        let coverage = text(&b, "#coverage").await;
        assert!(coverage.contains("Agency SO-A") && coverage.contains("Agency SO-B"), "{coverage}");
        let height: f64 = b
            .execute("return document.getElementById('alerts24h').getBoundingClientRect().top", vec![])
            .await
            .unwrap()
            .as_f64()
            .unwrap();
        assert!(height < 1000.0, "the last 24 h of alerts start below the first screen ({height} px)");
        shot(&b, "02-overview").await;

        // an incident moved to its next state
        b.goto(&format!("{base}/incidents/{inc_a}")).await.unwrap();
        assert_eq!(text(&b, "#state").await, "Đã phát hiện");
        assert!(text(&b, "#attacker").await.contains("203.0.113.1"));
        assert!(text(&b, "#victim").await.contains("198.51.100.1"));
        b.find(Locator::Id("next")).await.unwrap().click().await.unwrap();
        text_becomes(&b, "#state", "Đã thông báo").await;
        shot(&b, "03-incident").await;

        // a forged CSRF token: refused, nothing changed
        b.execute("document.querySelector('#transition input[name=csrf]').value = 'forged';", vec![])
            .await
            .unwrap();
        b.find(Locator::Id("next")).await.unwrap().click().await.unwrap();
        assert!(text(&b, "#refusal").await.contains("form token"));
        b.goto(&format!("{base}/incidents/{inc_a}")).await.unwrap();
        assert_eq!(text(&b, "#state").await, "Đã thông báo", "the forged form changed nothing");

        // a weekly report: HTML shown, PDF fetched by the page
        // report dates are Vietnam's calendar days (UTC+07:00)
        let today = time::OffsetDateTime::now_utc().to_offset(time::UtcOffset::from_hms(7, 0, 0).unwrap()).date();
        let (from, to) = (today - time::Duration::days(6), today + time::Duration::days(1));
        b.goto(&format!(
            "{base}/reports/download?kind=weekly&agency=SO-A&from={from}&to={to}&format=html&lang=vi"
        ))
        .await
        .unwrap();
        let report = text(&b, "article.report").await;
        assert!(report.contains("Nguồn tấn công") && report.contains("203.0.113.1"), "{report}");
        shot(&b, "04-weekly-report").await;
        let pdf = b
            .execute_async(
                "const done = arguments[arguments.length - 1];
                 fetch(arguments[0]).then(r => r.arrayBuffer()).then(buf => {
                   const b = new Uint8Array(buf);
                   done([b.length, String.fromCharCode(...b.slice(0, 5))]);
                 }).catch(e => done([0, String(e)]));",
                vec![json!(format!(
                    "/reports/download?kind=weekly&agency=SO-A&from={from}&to={to}&format=pdf"
                ))],
            )
            .await
            .unwrap();
        assert_eq!(pdf[1], "%PDF-", "{pdf}");
        assert!(pdf[0].as_u64().unwrap() > 1000, "{pdf}");

        // the incident's initial notice, printable and as PDF
        b.goto(&format!("{base}/incidents/{inc_a}")).await.unwrap();
        b.find(Locator::LinkText("PDF")).await.unwrap();
        let (len, head) =
            fetch_head(&b, &format!("/reports/download?kind=incident&notice=initial&id={inc_a}&format=pdf")).await;
        assert_eq!(head, "%PDF-");
        assert!(len > 1000);
        b.goto(&format!("{base}/reports/download?kind=incident&notice=initial&id={inc_a}&format=html&lang=en"))
            .await
            .unwrap();
        let notice = text(&b, "article.report").await;
        assert!(notice.contains("INITIAL INCIDENT REPORT") && notice.contains("203.0.113.1"), "{notice}");

        // live alerts: a new scan shows up in the open table, no reload
        b.goto(&format!("{base}/alerts?agency=SO-A")).await.unwrap();
        js(&b, "window.stillHere = 42;").await;
        assert!(!text(&b, "#alerts").await.contains("203.0.113.9"));
        let before = b
            .execute("return document.querySelectorAll('#alerts tbody tr').length;", vec![])
            .await
            .unwrap()
            .as_u64()
            .unwrap();
        let again = tmp.path().join("SO-A").join("again");
        std::fs::create_dir_all(&again).unwrap();
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap();
        let (pcap, ioc) = scan_at(&again, [203, 0, 113, 9], [198, 51, 100, 1], &[21, 25], Some(now));
        agents[0].start(&["--pcap", pcap.to_str().unwrap(), "--ioc", ioc.to_str().unwrap(), "--exit-when-drained"]);
        let mut seen = false;
        for _ in 0..300 {
            if text(&b, "#alerts").await.contains("203.0.113.9") {
                seen = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(seen, "the new alert never appeared in the open table");
        let still = b.execute("return window.stillHere;", vec![]).await.unwrap();
        assert_eq!(still, json!(42), "the page was reloaded");
        let rows = |b: &Client| {
            let b = b.clone();
            async move {
                b.execute("return document.querySelectorAll('#alerts tbody tr').length;", vec![])
                    .await
                    .unwrap()
                    .as_u64()
                    .unwrap()
            }
        };
        let added = rows(&b).await - before;
        assert!(added >= 2, "both ports' alerts");
        assert_eq!(text(&b, "#live-new").await, format!("+{added}"), "rows added live: {}", text(&b, "#alerts").await);
        shot(&b, "06-live-alerts").await;
        assert_eq!(agents[0].wait(Duration::from_secs(60)), 0);

        // the new scan is a second incident of SO-A: merged into the first
        let mut second = String::new();
        for _ in 0..200 {
            let list: Vec<Value> = c
                .cli(&["incidents", "list", "--json", "--agency", "SO-A"])
                .lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect();
            if let Some(i) = list.iter().find(|i| i["attacker"].to_string().contains("203.0.113.9")) {
                second = i["id"].as_u64().unwrap().to_string();
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(!second.is_empty(), "no incident for the second scan");
        b.goto(&format!("{base}/incidents/{inc_a}")).await.unwrap();
        js(&b, &format!(
            "const f = document.getElementById('merge'); f.querySelector('input[name=text]').value = '{second}';
             f.querySelector('input[name=reason]').value = 'same campaign'; f.querySelector('button').click();"
        ))
        .await;
        for _ in 0..100 {
            if text(&b, "#attacker").await.contains("203.0.113.9") {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(text(&b, "#attacker").await.contains("203.0.113.9"), "the merged incident's attacker joins");
        let merged: Value = serde_json::from_str(&c.cli(&["incidents", "show", &second, "--json"])).unwrap();
        assert_eq!(merged["state"], "closed", "{merged}");

        // the registry: a bad level refused with the CLI's message; a name changed
        b.goto(&format!("{base}/registry")).await.unwrap();
        assert!(text(&b, "#agency-SO-A").await.contains("Portal"));
        b.goto(&format!("{base}/registry/system/{sa}")).await.unwrap();
        js(&b, "document.getElementById('level').value = '9'; document.getElementById('save').click();").await;
        let refused = text(&b, "#refusal").await;
        assert!(refused.contains("level"), "{refused}");
        b.goto(&format!("{base}/registry/system/{sa}")).await.unwrap();
        js(&b, "document.getElementById('name').value = 'Cổng thông tin điện tử'; document.getElementById('save').click();")
            .await;
        for _ in 0..100 {
            if b.current_url().await.unwrap().path() == "/registry" {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(text(&b, "#agency-SO-A").await.contains("Cổng thông tin điện tử"));
        let system: Value = serde_json::from_str(&c.cli(&["system", "show", &sa.to_string(), "--json"])).unwrap();
        assert_eq!((system["name"].as_str(), system["level"].as_u64()), (Some("Cổng thông tin điện tử"), Some(2)));
        shot(&b, "07-registry").await;
        // an import checked only: it would create one system, writes none
        js(&b, "document.getElementById('content').value = 'agency,name,level\\nSO-A,Thư điện tử,2\\n';
                document.getElementById('import-submit').click();")
            .await;
        assert!(text(&b, "#result").await.contains(": 1"), "{}", text(&b, "main").await);
        let systems = c.cli(&["system", "list", "--agency", "SO-A", "--json"]);
        assert_eq!(systems.lines().count(), 1, "a checked import wrote nothing: {systems}");

        // the schedule's kept reports, downloadable
        b.goto(&format!("{base}/reports")).await.unwrap();
        let mut kept = String::new();
        for _ in 0..100 {
            b.goto(&format!("{base}/reports")).await.unwrap();
            kept = text(&b, "main").await;
            if kept.contains("SO-A") && kept.contains("SO-B") && b.find(Locator::Id("kept")).await.is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let table = text(&b, "#kept").await;
        assert!(table.contains("SO-A") && table.contains("SO-B") && table.contains("daily"), "{kept}");
        let href = b
            .execute("return document.querySelector('#kept a[download$=\".pdf\"]').getAttribute('href');", vec![])
            .await
            .unwrap();
        let (len, head) = fetch_head(&b, href.as_str().unwrap()).await;
        assert_eq!(head, "%PDF-", "{href}");
        assert!(len > 1000);
        shot(&b, "08-reports").await;

        // an agent revoked from the agents page
        let agent_b = agents[1].agent_id();
        b.goto(&format!("{base}/agents")).await.unwrap();
        js(&b, &format!(
            "const f = document.querySelector(\"form[action='/agents/revoke'] input[value='{agent_b}']\").form;
             f.querySelector('input[name=reason]').value = 'máy bị thu hồi'; f.querySelector('button').click();"
        ))
        .await;
        let mut revoked = false;
        for _ in 0..100 {
            let list = c.cli(&["agents", "list", "--json"]);
            if list.lines().any(|l| l.contains(&agent_b) && l.contains("\"revoked\":true")) {
                revoked = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(revoked, "agent B revoked through the console");
        sign_out(&b, &base).await;

        // an agency operator sees its own agency only
        sign_in(&b, &base, "op-a", "password-of-agency-a").await;
        let overview = text(&b, "main").await;
        assert!(overview.contains("SO-A") && !overview.contains("SO-B"), "{overview}");
        b.goto(&format!("{base}/incidents/{inc_b}")).await.unwrap();
        assert!(text(&b, "#refusal").await.contains("may not see"), "{}", text(&b, "main").await);
        shot(&b, "05-other-agency-refused").await;
        b.goto(&format!("{base}/incidents")).await.unwrap();
        assert!(!text(&b, "#incidents").await.contains("SO-B"));
        b.goto(&format!("{base}/reports")).await.unwrap();
        let kept = text(&b, "#kept").await;
        assert!(kept.contains("SO-A") && !kept.contains("SO-B"), "{kept}");
        b.goto(&format!("{base}/registry")).await.unwrap();
        assert!(!text(&b, "main").await.contains("SO-B"));
        b.goto(&format!("{base}/registry/system/{sa}")).await.unwrap();
        js(&b, "document.getElementById('level').value = '3'; document.getElementById('save').click();").await;
        assert!(text(&b, "#refusal").await.contains("may not"), "an agency user edits no system");
        sign_out(&b, &base).await;

        // five failures lock the name, even for the right password
        for _ in 0..5 {
            sign_in(&b, &base, "op-a", "wrong-wrong-wrong").await;
        }
        sign_in(&b, &base, "op-a", "password-of-agency-a").await;
        assert!(text(&b, "#error").await.contains("locked"));
        b.close().await.unwrap();
    });

    let log = c.cli(&["audit", "list"]);
    let entries: Vec<Value> = log.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let has = |action: &str, operator: &str, outcome: &str| {
        entries.iter().any(|e| e["action"] == action && e["operator"] == operator && e["outcome"] == outcome)
    };
    assert!(has("ConsoleSignIn", "admin", "PermissionDenied"), "the wrong password is audited");
    assert!(has("ConsoleSignIn", "admin", "ok"));
    assert!(has("TransitionIncident", "admin", "ok"), "the console's transition is an audited call");
    assert!(has("ConsoleForm", "admin", "PermissionDenied"), "the forged form is audited");
    assert!(
        has("GetIncident", "op-a", "PermissionDenied"),
        "the other agency's incident is refused and audited"
    );
    assert!(has("GetReport", "admin", "ok"));
    assert!(
        entries.iter().any(|e| e["action"] == "ConsoleSignIn"
            && e["operator"] == "op-a"
            && e["detail"].as_str().unwrap_or("").contains("locked")),
        "the lock-out is audited"
    );
}

/// `canhgac report weekly` in both languages and every format: the PDF's
/// text (pdftotext) carries the Vietnamese headings and the real attacker.
#[test]
fn weekly_reports_from_the_cli_in_every_format() {
    let tmp = tempfile::tempdir().unwrap();
    let (c, _agents, _sa, _sb) = two_agencies_with(tmp.path(), "");
    // report dates are Vietnam's calendar days (UTC+07:00)
    let today = time::OffsetDateTime::now_utc().to_offset(time::UtcOffset::from_hms(7, 0, 0).unwrap()).date();
    let (from, to) =
        ((today - time::Duration::days(6)).to_string(), (today + time::Duration::days(1)).to_string());
    let out = |fmt: &str, lang: &str| {
        let f = tmp.path().join(format!("weekly-{lang}.{fmt}"));
        c.cli(&[
            "report",
            "weekly",
            "--agency",
            "SO-A",
            "--from",
            &from,
            "--to",
            &to,
            "--format",
            fmt,
            "--lang",
            lang,
            "--out",
            f.to_str().unwrap(),
        ]);
        f
    };
    let pdf = out("pdf", "vi");
    let text = Command::new(tool("pdftotext")).arg(&pdf).arg("-").output().unwrap();
    assert!(text.status.success(), "pdftotext: {}", String::from_utf8_lossy(&text.stderr));
    let text = String::from_utf8(text.stdout).unwrap();
    for phrase in [
        "Báo cáo giám sát an toàn thông tin hằng tuần",
        "Nguồn tấn công",
        "Đối tượng bị tấn công",
        "203.0.113.1",
    ] {
        assert!(text.contains(phrase), "`{phrase}` not in the PDF text:\n{text}");
    }
    assert!(!text.contains("203.0.113.2"), "agency B's attacker in A's report:\n{text}");
    let html = std::fs::read_to_string(out("html", "en")).unwrap();
    assert!(html.contains("Attack sources") && html.contains("203.0.113.1"), "{html}");
    let json: Value = serde_json::from_str(&std::fs::read_to_string(out("json", "en")).unwrap()).unwrap();
    let sources =
        json["agencies"][0]["sections"].as_array().unwrap().iter().find(|s| s["id"] == "sources").unwrap();
    assert_eq!(sources["rows"][0][0], "203.0.113.1", "{sources}");
    let csv = std::fs::read_to_string(out("csv", "vi")).unwrap();
    assert!(csv.lines().any(|l| l.starts_with("SO-A,sources,1,203.0.113.1")), "{csv}");
    // the long-period reports: six months (incidents by category and level)
    // and the annual level-compliance summary
    let six = c.cli(&["report", "six-month", "--agency", "SO-A", "--format", "json", "--lang", "en"]);
    let six: Value = serde_json::from_str(&six).unwrap();
    let ids: Vec<&str> = six["agencies"][0]["sections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    for id in ["incidents_by_category", "systems_by_level", "compliance_summary", "layers", "incidents"] {
        assert!(ids.contains(&id), "{id} missing from the six-month report: {ids:?}");
    }
    let by_cat = six["agencies"][0]["sections"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == "incidents_by_category")
        .unwrap();
    assert_eq!(by_cat["rows"][0][1], "2", "the incident's system is level 2: {by_cat}");
    let annual = c.cli(&["report", "annual", "--agency", "SO-A", "--format", "html"]);
    assert!(
        annual.contains("Báo cáo tổng hợp tuân thủ cấp độ") && annual.contains("Bốn lớp giám sát"),
        "{annual}"
    );
    // bad periods are refused, naming the argument
    let o = c.cli_output(&["report", "weekly", "--from", "2099-01-01", "--to", "2099-01-08"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("future"));
    let o = c.cli_output(&["report", "weekly", "--from", &to, "--to", &from]);
    assert_eq!(o.status.code(), Some(2));
}

fn json_lines(s: &str) -> Vec<Value> {
    s.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

fn pdf_text(path: &Path) -> String {
    let out = Command::new(tool("pdftotext")).arg(path).arg("-").output().unwrap();
    assert!(out.status.success(), "pdftotext: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// `[[reports.schedule]]`: the reports of the last ended period are made
/// once (a restart makes nothing again), listed and fetched under the
/// operators' tenancy; `report incident` renders an incident's notice.
#[test]
fn scheduled_reports_are_kept_once_and_confined_and_notices_render() {
    let tmp = tempfile::tempdir().unwrap();
    let schedule = "[reports]\ncheck_interval = \"1s\"\n\
        [[reports.schedule]]\nkind = \"daily\"\nformats = [\"html\", \"pdf\"]\n\
        [[reports.schedule]]\nkind = \"weekly\"\nagency = \"all\"\nformats = [\"json\"]\nlanguage = \"en\"\n";
    let (mut c, _agents, _sa, _sb) = two_agencies_with(tmp.path(), schedule);
    let list = |c: &canhgac_tests::Collector| json_lines(&c.cli(&["report", "list", "--format", "json"]));
    let kept = wait_for("five scheduled reports", Duration::from_secs(30), || {
        let l = list(&c);
        (l.len() == 5).then_some(l)
    });
    let ids: Vec<&str> = kept.iter().map(|r| r["id"].as_str().unwrap()).collect();
    let today = time::OffsetDateTime::now_utc().to_offset(time::UtcOffset::from_hms(7, 0, 0).unwrap()).date();
    let day = |d: time::Date| format!("{:04}{:02}{:02}", d.year(), d.month() as u8, d.day());
    let daily = format!("{}_{}", day(today - time::Duration::days(1)), day(today));
    for want in [format!("SO-A/daily/{daily}.pdf"), format!("SO-B/daily/{daily}.html")] {
        assert!(ids.contains(&want.as_str()), "{want} not in {ids:?}");
    }
    assert!(ids.iter().any(|i| i.starts_with("_all/weekly/") && i.ends_with(".json")), "{ids:?}");
    let table = c.cli(&["report", "list"]);
    assert!(table.contains("schedule: daily report, each agency, html, pdf (vi)"), "{table}");

    // a kept PDF opens, in Vietnamese
    let pdf = tmp.path().join("daily.pdf");
    c.cli(&["report", "fetch", &format!("SO-A/daily/{daily}.pdf"), "--out", pdf.to_str().unwrap()]);
    let text = pdf_text(&pdf);
    assert!(text.contains("Báo cáo tình hình giám sát hằng ngày"), "{text}");
    let weekly = kept.iter().find(|r| r["kind"] == "weekly").unwrap();
    let weekly: Value =
        serde_json::from_str(&c.cli(&["report", "fetch", weekly["id"].as_str().unwrap()])).unwrap();
    assert_eq!(weekly["agencies"].as_array().unwrap().len(), 2, "the weekly report of every agency");

    // a restart makes nothing again
    let written: Vec<Value> = kept.iter().map(|r| r["written"].clone()).collect();
    c.kill();
    c.start();
    std::thread::sleep(Duration::from_secs(3));
    let again = list(&c);
    assert_eq!(again.len(), 5);
    assert_eq!(again.iter().map(|r| r["written"].clone()).collect::<Vec<_>>(), written, "rewritten");

    // an agency operator: its own reports only
    let pa = agency_operator(&c, tmp.path(), "op-a", "SO-A");
    let as_a = |args: &[&str]| {
        Command::new(bin("canhgac"))
            .arg("--profile")
            .arg(&pa)
            .args(args)
            .env_remove("CANHGAC_PROFILE")
            .env_remove("CANHGAC_COLLECTOR")
            .output()
            .unwrap()
    };
    let own = as_a(&["report", "list", "--format", "json"]);
    let own = json_lines(&String::from_utf8_lossy(&own.stdout));
    assert_eq!(own.len(), 2, "{own:?}");
    assert!(own.iter().all(|r| r["agency"] == "SO-A"), "{own:?}");
    let o = as_a(&["report", "fetch", &format!("SO-B/daily/{daily}.html")]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("may not see"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let o = as_a(&["report", "fetch", weekly_id(&kept)]);
    assert_eq!(o.status.code(), Some(1), "the report of every agency is not an agency's");
    let o = c.cli_output(&["report", "fetch", "../../pki/ca.key"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("is not a stored report"));

    // incident notices: PDF in Vietnamese, HTML in English
    let incidents = json_lines(&c.cli(&["incidents", "list", "--json", "--agency", "SO-A"]));
    let id = incidents[0]["id"].as_u64().unwrap().to_string();
    let notice = tmp.path().join("notice.pdf");
    c.cli(&["report", "incident", "--id", &id, "--format", "pdf", "--out", notice.to_str().unwrap()]);
    let text = pdf_text(&notice);
    for phrase in ["BÁO CÁO BAN ĐẦU SỰ CỐ", "Nguồn tấn công", "203.0.113.1", "198.51.100.1", "Agency SO-A"]
    {
        assert!(text.contains(phrase), "`{phrase}` not in the notice:\n{text}");
    }
    let html = c.cli(&["report", "incident", "--id", &id, "--lang", "en"]);
    assert!(html.contains("INITIAL INCIDENT REPORT") && html.contains("Attack source"), "{html}");
    let csv = c.cli(&["report", "incident", "--id", &id, "--format", "csv"]);
    assert!(csv.lines().any(|l| l.starts_with("SO-A,evidence,1,")), "{csv}");
    let o = c.cli_output(&["report", "incident", "--id", &id, "--notice", "completion"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("needs a closed incident"));
    let o = c.cli_output(&["report", "incident"]);
    assert_eq!(o.status.code(), Some(2), "--id is required");
}

fn weekly_id(kept: &[Value]) -> &str {
    kept.iter().find(|r| r["kind"] == "weekly").unwrap()["id"].as_str().unwrap()
}

/// One HTTP/1.1 exchange with the console over TLS, presenting `cert`'s
/// operator certificate or none; the whole response as text.
async fn exchange(
    port: u16,
    ca: &str,
    cert: Option<&canhgac_proto::profile::Profile>,
    request: &str,
) -> String {
    use canhgac_proto::client::{parse_certs, parse_key, provider};
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut roots = rustls::RootCertStore::empty();
    for c in parse_certs(ca, "CA").unwrap() {
        roots.add(c).unwrap();
    }
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let mut config = match cert {
        Some(p) => builder
            .with_client_auth_cert(
                parse_certs(&p.certificate, "certificate").unwrap(),
                parse_key(&p.private_key, "key").unwrap(),
            )
            .unwrap(),
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    let mut tls =
        tokio_rustls::TlsConnector::from(std::sync::Arc::new(config)).connect(name, tcp).await.unwrap();
    tls.write_all(request.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    let _ = tls.read_to_end(&mut out).await;
    String::from_utf8_lossy(&out).into_owned()
}

fn cookie(response: &str, name: &str) -> String {
    response
        .lines()
        .filter(|l| l.to_ascii_lowercase().starts_with("set-cookie:"))
        .filter_map(|l| l.split_once(':').map(|x| x.1.trim()))
        .find_map(|v| {
            v.strip_prefix(&format!("{name}=")).map(|v| v.split(';').next().unwrap_or("").to_string())
        })
        .unwrap_or_default()
}

/// `console.bind_client_certificate`: the right password alone does not
/// sign in, nor with another operator's certificate; with the operator's
/// own it does, and the session cookie is refused on a connection that
/// does not present that certificate. Each refusal is audited.
#[test]
fn certificate_bound_sign_in_needs_the_operators_own_certificate() {
    let tmp = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut c = canhgac_tests::Collector::init(tmp.path());
    c.set_config(&format!("[console]\nlisten = \"127.0.0.1:{port}\"\nbind_client_certificate = true\n"));
    c.start();
    passwd(&c.profile(), "admin", "a-long-admin-password");
    let other_path = tmp.path().join("auditor.profile");
    c.cli(&["operator", "add", "--name", "aud", "--role", "auditor", "--out", other_path.to_str().unwrap()]);
    let admin = canhgac_proto::profile::Profile::load(&c.profile()).unwrap();
    let other = canhgac_proto::profile::Profile::load(&other_path).unwrap();
    let ca = admin.ca.clone();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let sign_in = |cert: Option<&canhgac_proto::profile::Profile>| {
            let ca = ca.clone();
            let cert = cert.cloned();
            async move {
                let page = exchange(port, &ca, cert.as_ref(), "GET /login HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").await;
                let tok = cookie(&page, "canhgac_login");
                assert!(!tok.is_empty(), "{page}");
                let body = format!("username=admin&password=a-long-admin-password&login_token={tok}");
                exchange(
                    port,
                    &ca,
                    cert.as_ref(),
                    &format!(
                        "POST /login HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nCookie: canhgac_login={tok}\r\n\
                         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
                        body.len()
                    ),
                )
                .await
            }
        };
        let no_cert = sign_in(None).await;
        assert!(no_cert.starts_with("HTTP/1.1 401"), "{no_cert}");
        assert!(no_cert.contains("operator certificate"), "{no_cert}");
        assert!(cookie(&no_cert, "canhgac_session").is_empty());
        let wrong = sign_in(Some(&other)).await;
        assert!(wrong.starts_with("HTTP/1.1 401"), "another operator's certificate: {wrong}");
        let ok = sign_in(Some(&admin)).await;
        assert!(ok.starts_with("HTTP/1.1 303"), "{ok}");
        let session = cookie(&ok, "canhgac_session");
        assert!(!session.is_empty(), "{ok}");
        let get = format!("GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nCookie: canhgac_session={session}\r\n\r\n");
        let page = exchange(port, &ca, Some(&admin), &get).await;
        assert!(page.starts_with("HTTP/1.1 200") && page.contains("id=\"operator\">admin<"), "{page}");
        let stolen = exchange(port, &ca, None, &get).await;
        assert!(stolen.starts_with("HTTP/1.1 403") && stolen.contains("another certificate"), "{stolen}");
        let stolen = exchange(port, &ca, Some(&other), &get).await;
        assert!(stolen.starts_with("HTTP/1.1 403"), "{stolen}");
    });
    let log = json_lines(&c.cli(&["audit", "list"]));
    let refused = log
        .iter()
        .filter(|e| {
            e["action"] == "ConsoleSignIn" && e["detail"].as_str().unwrap_or("").contains("certificate-bound")
        })
        .count();
    assert_eq!(refused, 2, "both refused sign-ins audited");
    assert!(log.iter().any(|e| e["action"] == "ConsoleSession" && e["outcome"] == "PermissionDenied"));
}
