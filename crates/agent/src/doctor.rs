//! `usher-agent doctor`: the seed's troubleshooting list (SPEC X4), each check PASS or FAIL with
//! the reason and the fix.

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::time::Duration;

use serde_json::{Value, json};

use crate::state::StateDir;

/// One check's result.
#[derive(Debug, Clone)]
pub struct Check {
    /// What was checked.
    pub name: String,
    /// Whether it passed.
    pub pass: bool,
    /// What was found.
    pub detail: String,
    /// What to do when it failed.
    pub fix: String,
}

impl Check {
    fn pass(name: &str, detail: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            pass: true,
            detail: detail.into(),
            fix: String::new(),
        }
    }
    fn fail(name: &str, detail: impl Into<String>, fix: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            pass: false,
            detail: detail.into(),
            fix: fix.into(),
        }
    }

    /// As JSON.
    pub fn json(&self) -> Value {
        json!({"check": self.name, "result": if self.pass { "PASS" } else { "FAIL" }, "detail": self.detail, "fix": self.fix})
    }

    /// As a line.
    pub fn text(&self) -> String {
        if self.pass {
            format!("PASS  {}: {}", self.name, self.detail)
        } else {
            format!("FAIL  {}: {}\n      Fix: {}", self.name, self.detail, self.fix)
        }
    }
}

/// The endpoints a machine must reach (SPEC X5), by kind, under `server`.
pub fn endpoints(server: &str, tenant: &str) -> Vec<(&'static str, String)> {
    let s = server.trim_end_matches('/');
    vec![
        ("device registration", format!("{s}/usher/agent/device")),
        ("device authentication", format!("{s}/usher/agent")),
        ("authentication", format!("{s}/{tenant}/oauth2/v2.0/token")),
        ("login check", format!("{s}/usher/loginCheck")),
    ]
}

/// The checks as the commands an operator would type (the seed's curl and nslookup lines).
pub fn commands(
    joined: &crate::state::Joined,
    imds: &str,
    ca: &std::path::Path,
    dns: Option<IpAddr>,
) -> Vec<String> {
    let mut out = vec![
        format!("curl -H Metadata:true \"http://{imds}/metadata/instance?api-version=2017-08-01\""),
        format!("curl -H Metadata:true \"http://{imds}/metadata/identity/info?api-version=2018-02-01\""),
        format!(
            "curl -H Metadata:true \"http://{imds}/metadata/identity/oauth2/token?resource={}&api-version=2018-02-01\"",
            usher_core::well_known::DEVICE_REGISTRATION_URI
        ),
    ];
    for (_, url) in endpoints(&joined.server, &joined.tenant_id) {
        out.push(format!("curl --cacert {} {url} -D -", ca.display()));
    }
    let host = url::Url::parse(&joined.server)
        .ok()
        .and_then(|u| u.host_str().map(str::to_owned))
        .unwrap_or_default();
    out.push(match dns {
        Some(d) => format!("nslookup {host} {d}"),
        None => format!("nslookup {host}"),
    });
    out
}

fn b64_json(part: &str) -> Option<Value> {
    serde_json::from_slice(&usher_crypto::b64url_decode(part).ok()?).ok()
}

/// A DNS A query to `server` (UDP port 53) for `name`: the addresses it answered.
pub fn dns_query(server: IpAddr, name: &str) -> Result<Vec<IpAddr>, String> {
    let mut q: Vec<u8> = vec![0x4a, 0x1d, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
    for label in name.trim_end_matches('.').split('.') {
        let len = u8::try_from(label.len()).map_err(|_| "a label is too long".to_owned())?;
        q.push(len);
        q.extend_from_slice(label.as_bytes());
    }
    q.extend_from_slice(&[0, 0, 1, 0, 1]);
    let sock =
        UdpSocket::bind(if server.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" }).map_err(|e| e.to_string())?;
    sock.set_read_timeout(Some(Duration::from_secs(3)))
        .map_err(|e| e.to_string())?;
    sock.send_to(&q, SocketAddr::new(server, 53))
        .map_err(|e| e.to_string())?;
    let mut buf = [0u8; 1500];
    let n = sock
        .recv(&mut buf)
        .map_err(|e| format!("no answer from {server}: {e}"))?;
    let r = &buf[..n];
    if r.len() < 12 || r[0] != 0x4a || r[1] != 0x1d {
        return Err("a malformed answer".into());
    }
    let rcode = r[3] & 0x0f;
    if rcode != 0 {
        return Err(format!(
            "the server answered with error code {rcode} (3 = no such name)"
        ));
    }
    let answers = u16::from_be_bytes([r[6], r[7]]);
    // Skip the question.
    let mut i = 12;
    while i < r.len() && r[i] != 0 {
        i += usize::from(r[i]) + 1;
    }
    i += 5;
    let mut out = Vec::new();
    for _ in 0..answers {
        if i + 12 > r.len() {
            break;
        }
        // Name: a pointer (2 bytes) or labels.
        if r[i] & 0xc0 == 0xc0 {
            i += 2;
        } else {
            while i < r.len() && r[i] != 0 {
                i += usize::from(r[i]) + 1;
            }
            i += 1;
        }
        if i + 10 > r.len() {
            break;
        }
        let rtype = u16::from_be_bytes([r[i], r[i + 1]]);
        let len = usize::from(u16::from_be_bytes([r[i + 8], r[i + 9]]));
        i += 10;
        if rtype == 1 && len == 4 && i + 4 <= r.len() {
            out.push(IpAddr::from([r[i], r[i + 1], r[i + 2], r[i + 3]]));
        }
        i += len;
    }
    Ok(out)
}

/// Runs every check.
/// The sshd settings the login path needs, as `sshd -T` prints them.
pub const SSHD_NEEDS: [(&str, &str); 5] = [
    ("trustedusercakeys", crate::loginconf::USER_CA_FILE),
    (
        "authorizedprincipalscommand",
        "/usr/libexec/usher/usher-principals %u %k",
    ),
    ("authorizedprincipalscommanduser", "root"),
    ("usepam", "yes"),
    ("kbdinteractiveauthentication", "yes"),
];

/// The needed sshd settings that `sshd -T` output does not have (another file set them first).
pub fn sshd_settings_missing(effective: &str) -> Vec<String> {
    SSHD_NEEDS
        .iter()
        .filter(|(key, value)| {
            !effective.lines().any(|l| {
                l.split_once(' ')
                    .is_some_and(|(k, v)| k.eq_ignore_ascii_case(key) && v.trim() == *value)
            })
        })
        .map(|(k, v)| format!("{k} {v}"))
        .collect()
}

/// What the login extension installed is still there and in effect: the modules and helper,
/// `usher` in nsswitch.conf, `pam_usher.so` in sshd's stack, and sshd's effective settings.
pub fn login_layer_checks(root: &std::path::Path) -> Vec<Check> {
    use crate::loginconf as lc;
    let mut out = Vec::new();
    let at = |p: &str| root.join(p.trim_start_matches('/'));
    let missing: Vec<&str> = lc::SHIPPED
        .iter()
        .map(|s| s.target)
        .filter(|t| !at(t).is_file())
        .collect();
    out.push(if missing.is_empty() {
        Check::pass(
            "login modules",
            "the NSS and PAM modules and the sshd helper are installed",
        )
    } else {
        Check::fail(
            "login modules",
            format!("missing: {}", missing.join(", ")),
            "set the extension again (usher vm extension set --force-update ...)",
        )
    });
    let nss = std::fs::read_to_string(at(lc::NSSWITCH)).unwrap_or_default();
    let enabled = ["passwd", "group"].iter().all(|db| {
        nss.lines().any(|l| {
            l.split_once(':')
                .is_some_and(|(k, v)| k.trim() == *db && v.split_whitespace().any(|w| w == "usher"))
        })
    });
    out.push(if enabled {
        Check::pass("name service", "nsswitch.conf names usher for passwd and group")
    } else {
        Check::fail(
            "name service",
            "nsswitch.conf does not name usher for passwd and group: directory users are unknown here",
            "set the extension again, or add usher after files on the passwd and group lines",
        )
    });
    let pam = std::fs::read_to_string(at("/etc/pam.d/sshd")).unwrap_or_default();
    out.push(if pam.contains("pam_usher.so") {
        Check::pass("PAM", "/etc/pam.d/sshd uses pam_usher.so")
    } else {
        Check::fail(
            "PAM",
            "/etc/pam.d/sshd does not use pam_usher.so: the password path and home directories do not work",
            "set the extension again, or add the lines from docs/login.md",
        )
    });
    if root == std::path::Path::new("/") && std::path::Path::new("/usr/sbin/sshd").exists() {
        match std::process::Command::new("/usr/sbin/sshd").arg("-T").output() {
            Ok(o) if o.status.success() => {
                let missing = sshd_settings_missing(&String::from_utf8_lossy(&o.stdout));
                out.push(if missing.is_empty() {
                    Check::pass("sshd", "sshd -T shows the certificate authority, the principals helper and keyboard-interactive")
                } else {
                    Check::fail(
                        "sshd",
                        format!("sshd -T does not show: {}", missing.join("; ")),
                        "an earlier file in /etc/ssh/sshd_config.d or sshd_config sets these first: remove those lines there",
                    )
                });
            }
            Ok(o) => out.push(Check::fail(
                "sshd",
                format!("sshd -T failed: {}", String::from_utf8_lossy(&o.stderr).trim()),
                "fix the sshd configuration it names",
            )),
            Err(e) => out.push(Check::fail(
                "sshd",
                format!("cannot run sshd -T: {e}"),
                "install openssh-server",
            )),
        }
    }
    out
}

pub async fn run(state: &StateDir, dns: Option<IpAddr>) -> Vec<Check> {
    let mut checks = Vec::new();
    let joined = match state.joined() {
        Ok(Some(j)) => {
            checks.push(Check::pass(
                "machine joined",
                format!("VM {} in tenant {}", j.vm_resource_id, j.tenant_id),
            ));
            j
        }
        Ok(None) => {
            checks.push(Check::fail("machine joined", "this machine has not joined", "run `usher-agent join --server URL --ca-file F --token T` with a token from `usher vm onboarding-token`"));
            return checks;
        }
        Err(e) => {
            checks.push(Check::fail(
                "machine joined",
                format!("{e:#}"),
                "restore the state directory or join again",
            ));
            return checks;
        }
    };
    let status = state.status().unwrap_or_default();
    let imds = status
        .imds_address
        .clone()
        .unwrap_or_else(|| crate::config::DEFAULT_IMDS_ADDRESS.to_owned());
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .no_proxy()
        .build();
    let Ok(http) = http else {
        checks.push(Check::fail(
            "HTTP client",
            "cannot set up HTTP",
            "check the system's TLS libraries",
        ));
        return checks;
    };
    let get = |path: String| {
        let http = http.clone();
        let url = format!("http://{imds}{path}");
        async move {
            let r = http
                .get(&url)
                .header("Metadata", "true")
                .send()
                .await
                .map_err(|e| format!("{url}: {e}"))?;
            let status = r.status().as_u16();
            let body: Value = r.json().await.map_err(|e| format!("{url}: {e}"))?;
            Ok::<(u16, Value), String>((status, body))
        }
    };
    let imds_fix = format!(
        "start the agent (`usher-agent run`, or systemctl start usher-agent); it serves IMDS on {imds}"
    );
    match get("/metadata/instance?api-version=2017-08-01".into()).await {
        Ok((200, b)) if b["compute"]["resourceId"].as_str() == Some(joined.vm_resource_id.as_str()) => {
            checks.push(Check::pass(
                "IMDS instance",
                format!("names this VM: {}", joined.vm_resource_id),
            ));
        }
        Ok((s, b)) => checks.push(Check::fail(
            "IMDS instance",
            format!("HTTP {s}: {b}"),
            imds_fix.clone(),
        )),
        Err(e) => checks.push(Check::fail("IMDS instance", e, imds_fix.clone())),
    }
    match get("/metadata/identity/info?api-version=2018-02-01".into()).await {
        Ok((200, b)) if b["tenantId"].as_str() == Some(joined.tenant_id.as_str()) => {
            checks.push(Check::pass(
                "identity info",
                format!("valid tenant id {}", joined.tenant_id),
            ));
        }
        Ok((s, b)) => checks.push(Check::fail(
            "identity info",
            format!("HTTP {s}: {b}"),
            "turn on the VM's system-assigned identity: usher vm identity assign -g RG -n VM",
        )),
        Err(e) => checks.push(Check::fail("identity info", e, imds_fix.clone())),
    }
    let resource = usher_core::well_known::DEVICE_REGISTRATION_URI;
    match get(format!(
        "/metadata/identity/oauth2/token?api-version=2018-02-01&resource={resource}"
    ))
    .await
    {
        Ok((200, b)) => {
            let claims = b["access_token"]
                .as_str()
                .and_then(|t| t.split('.').nth(1))
                .and_then(b64_json)
                .unwrap_or(Value::Null);
            let oid = claims["oid"].as_str().unwrap_or_default();
            let tid = claims["tid"].as_str().unwrap_or_default();
            let identity = b["object_id"].as_str().unwrap_or_default();
            if !oid.is_empty() && oid == identity && tid == joined.tenant_id {
                checks.push(Check::pass(
                    "device registration token",
                    format!("token for {resource}: oid {oid} is the VM's identity, tid {tid}"),
                ));
            } else {
                checks.push(Check::fail(
                    "device registration token",
                    format!("the token's oid '{oid}' / tid '{tid}' are not the VM's identity '{identity}' in tenant {}", joined.tenant_id),
                    "turn the VM's identity off and on again (usher vm identity assign) and restart the agent",
                ));
            }
        }
        Ok((s, b)) => checks.push(Check::fail(
            "device registration token",
            format!("HTTP {s}: {b}"),
            "turn on the VM's identity and check the server is reachable",
        )),
        Err(e) => checks.push(Check::fail("device registration token", e, imds_fix.clone())),
    }
    let ca = state.ca_path();
    match crate::api::http_client(&ca, Duration::from_secs(10)) {
        Ok(tls) => {
            for (kind, url) in endpoints(&joined.server, &joined.tenant_id) {
                match tls.get(&url).send().await {
                    Ok(r) => checks.push(Check::pass(&format!("endpoint: {kind}"), format!("{url} answered HTTP {}", r.status().as_u16()))),
                    Err(e) => checks.push(Check::fail(
                        &format!("endpoint: {kind}"),
                        format!("{url}: {e}"),
                        "allow outbound HTTPS from this machine to the server (firewall, proxy) and check the server runs",
                    )),
                }
            }
        }
        Err(e) => checks.push(Check::fail(
            "endpoints",
            format!("{e:#}"),
            "join again to restore the server's CA certificate",
        )),
    }
    let login_conf = std::path::Path::new("/etc/usher/login.conf");
    let ext_ok = status
        .extensions
        .values()
        .any(|e| e.handler == usher_proto::compute::LINUX_LOGIN_CANONICAL && e.state == "Succeeded");
    match (ext_ok, std::fs::read_to_string(login_conf)) {
        (true, Ok(t)) if t.starts_with(crate::files::MARKER) => {
            checks.push(Check::pass(
                "login configuration",
                "the login extension succeeded and /etc/usher/login.conf is in place",
            ));
            checks.extend(login_layer_checks(std::path::Path::new("/")));
        }
        (true, _) => checks.push(Check::fail(
            "login configuration",
            "the login extension succeeded but /etc/usher/login.conf is missing or was changed",
            "set the extension again: usher vm extension set --force-update ...",
        )),
        (false, _) => checks.push(Check::fail(
            "login configuration",
            "the login extension is not installed on this machine",
            "usher vm extension set --publisher Usher.Identity --name LoginForLinux -g RG --vm-name VM",
        )),
    }
    let host = url::Url::parse(&joined.server)
        .ok()
        .and_then(|u| u.host_str().map(str::to_owned))
        .unwrap_or_default();
    match host.parse::<IpAddr>() {
        Ok(_) => checks.push(Check::pass(
            "name resolution",
            format!("the server is named by its address {host}; nothing to resolve"),
        )),
        Err(_) => match dns {
            Some(server) => match tokio::task::spawn_blocking({
                let host = host.clone();
                move || dns_query(server, &host)
            })
            .await
            {
                Ok(Ok(addrs)) if !addrs.is_empty() => checks.push(Check::pass(
                    "name resolution",
                    format!("{host} → {addrs:?}, answered by {server}"),
                )),
                Ok(Ok(_)) => checks.push(Check::fail(
                    "name resolution",
                    format!("{server} knows {host} but gave no address"),
                    "add an A record for the server's name",
                )),
                Ok(Err(e)) => checks.push(Check::fail(
                    "name resolution",
                    format!("{host} via {server}: {e}"),
                    "check the DNS server and the server's DNS name",
                )),
                Err(e) => checks.push(Check::fail("name resolution", e.to_string(), "retry")),
            },
            None => {
                let nameservers: Vec<String> = std::fs::read_to_string("/etc/resolv.conf")
                    .unwrap_or_default()
                    .lines()
                    .filter_map(|l| l.trim().strip_prefix("nameserver").map(|s| s.trim().to_owned()))
                    .collect();
                match tokio::net::lookup_host((host.as_str(), 443)).await {
                    Ok(addrs) => checks.push(Check::pass("name resolution", format!("{host} → {:?} (system resolver; nameservers {nameservers:?}; pass --dns SERVER to see which one answers)", addrs.map(|a| a.ip()).collect::<Vec<_>>()))),
                    Err(e) => checks.push(Check::fail("name resolution", format!("{host}: {e} (nameservers {nameservers:?})"), "fix /etc/resolv.conf or the DNS record; `usher-agent doctor --dns SERVER` asks one server directly")),
                }
            }
        },
    }
    checks
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "test code")]
mod tests {
    use super::*;

    /// A one-shot DNS responder on loopback (a stand-in: the test must not depend on the
    /// machine's resolver) answering with a compressed-name A record.
    fn responder(answer: [u8; 4], rcode: u8) -> (IpAddr, std::thread::JoinHandle<()>) {
        let sock = UdpSocket::bind("127.0.0.1:53")
            .or_else(|_| UdpSocket::bind("127.0.0.2:53"))
            .unwrap();
        let ip = sock.local_addr().unwrap().ip();
        let h = std::thread::spawn(move || {
            let mut buf = [0u8; 512];
            let (n, from) = sock.recv_from(&mut buf).unwrap();
            let mut r = buf[..n].to_vec();
            r[2] = 0x81;
            r[3] = 0x80 | rcode;
            r[7] = u8::from(rcode == 0);
            if rcode == 0 {
                r.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4]);
                r.extend_from_slice(&answer);
            }
            sock.send_to(&r, from).unwrap();
        });
        (ip, h)
    }

    #[test]
    fn dns_query_reads_the_answer_and_the_error() {
        let (ip, h) = responder([10, 1, 2, 3], 0);
        assert_eq!(
            dns_query(ip, "usher.example.test").unwrap(),
            vec![IpAddr::from([10, 1, 2, 3])]
        );
        h.join().unwrap();
        let (ip, h) = responder([0; 4], 3);
        let e = dns_query(ip, "missing.example.test").unwrap_err();
        assert!(e.contains("no such name"), "{e}");
        h.join().unwrap();
    }

    #[test]
    fn sshd_effective_settings_are_checked() {
        let good = "port 22\ntrustedusercakeys /etc/ssh/usher_user_ca.pub\nauthorizedprincipalscommand /usr/libexec/usher/usher-principals %u %k\nauthorizedprincipalscommanduser root\nusepam yes\nkbdinteractiveauthentication yes\n";
        assert!(sshd_settings_missing(good).is_empty());
        let overridden = good.replace(
            "kbdinteractiveauthentication yes",
            "kbdinteractiveauthentication no",
        );
        assert_eq!(
            sshd_settings_missing(&overridden),
            vec!["kbdinteractiveauthentication yes".to_owned()]
        );
        let tmp = tempfile::tempdir().unwrap();
        let checks = login_layer_checks(tmp.path());
        assert!(
            checks.iter().all(|c| !c.pass),
            "nothing installed: every check fails"
        );
        assert!(
            checks[0].detail.contains("libnss_usher.so.2"),
            "{}",
            checks[0].detail
        );
    }

    #[test]
    fn endpoints_are_under_the_public_url() {
        let list = endpoints("https://usher.example:8443/", "t1");
        assert_eq!(list.len(), 4);
        assert!(
            list.iter()
                .all(|(_, u)| u.starts_with("https://usher.example:8443/"))
        );
        assert!(
            list.iter()
                .any(|(k, u)| *k == "authentication" && u.ends_with("/t1/oauth2/v2.0/token"))
        );
    }
}
