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

use crate::supervision::two_agencies_with;

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
        "[telemetry]\nheartbeat_interval = \"1s\"\n[supervision]\nagent_silence_limit = \"2s\"\n[console]\nlisten = \"127.0.0.1:{console_port}\"\n"
    );
    let (c, _agents, _sa, _sb) = two_agencies_with(tmp.path(), &config);
    passwd(&c.profile(), "admin", "mật-khẩu-quản-trị-1");
    let pa = tmp.path().join("op-a.profile");
    c.cli(&[
        "operator",
        "add",
        "--name",
        "op-a",
        "--role",
        "agency",
        "--agency",
        "SO-A",
        "--out",
        pa.to_str().unwrap(),
    ]);
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
        let today = time::OffsetDateTime::now_utc().date();
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
    let today = time::OffsetDateTime::now_utc().date();
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
