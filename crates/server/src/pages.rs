//! The sign-in pages (SPEC T6, W2): small server-rendered HTML, every value escaped. The only
//! script is the server's own `/static/passkey.js`, for the WebAuthn calls of the passkey pages.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use html_escape::{encode_double_quoted_attribute as attr, encode_text as text};

fn layout(title: &str, body: &str) -> String {
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
<title>{t} - usher</title><style>body{{font-family:system-ui,sans-serif;background:#f3f3f3;margin:0}}\
main{{max-width:380px;margin:8vh auto;background:#fff;padding:32px;box-shadow:0 2px 6px rgba(0,0,0,.2)}}\
h1{{font-size:22px;font-weight:600}}label{{display:block;margin:14px 0 4px}}input{{width:100%;padding:8px;box-sizing:border-box;font-size:15px}}\
button{{margin-top:20px;padding:8px 24px;background:#0067b8;color:#fff;border:0;font-size:15px}}.err{{color:#c00;margin:8px 0}}\
code{{font-size:16px;word-break:break-all}}.muted{{color:#555;font-size:13px}}</style></head>\
<body><main><div class=\"muted\">usher</div><h1>{t}</h1>{body}</main></body></html>",
        t = text(title),
        body = body
    )
}

fn error_line(error: Option<&str>) -> String {
    error
        .map(|e| format!("<p class=\"err\" role=\"alert\" id=\"error\">{}</p>", text(e)))
        .unwrap_or_default()
}

/// A page response that is never cached or framed. The policy has no `form-action`: browsers
/// apply it to the redirect that follows a form post, which would block the redirect back to
/// the application.
pub fn page(status: StatusCode, html: String) -> Response {
    let mut resp = (status, Html(html)).into_response();
    let h = resp.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'unsafe-inline'; frame-ancestors 'none'",
        ),
    );
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    resp
}

fn form(action: &str, txn: &str, step: &str, fields: &str, button: &str) -> String {
    format!(
        "<form method=\"post\" action=\"{a}\"><input type=\"hidden\" name=\"txn\" value=\"{t}\"><input type=\"hidden\" name=\"step\" value=\"{s}\">{fields}<button type=\"submit\">{b}</button></form>",
        a = attr(action),
        t = attr(txn),
        s = attr(step),
        b = text(button)
    )
}

/// User name and password.
pub fn password(
    action: &str,
    txn: &str,
    client: &str,
    username: Option<&str>,
    error: Option<&str>,
) -> String {
    let fields = format!(
        "<p class=\"muted\">to continue to {c}</p>{e}<label for=\"username\">Email or user name</label><input id=\"username\" name=\"username\" autocomplete=\"username\" value=\"{u}\" required>\
<label for=\"password\">Password</label><input id=\"password\" name=\"password\" type=\"password\" autocomplete=\"current-password\" required>",
        c = text(client),
        e = error_line(error),
        u = attr(username.unwrap_or_default())
    );
    let passkey = "<button type=\"submit\" name=\"use\" value=\"passkey\" formnovalidate id=\"use-passkey\">Sign in with a passkey</button>";
    let body =
        form(action, txn, "password", &fields, "Sign in").replace("</form>", &format!("{passkey}</form>"));
    layout("Sign in", &body)
}

/// The passkey script.
pub const PASSKEY_JS: &str = include_str!("../static/passkey.js");

fn passkey_form(
    action: &str,
    txn: &str,
    step: &str,
    mode: &str,
    options: &str,
    fields: &str,
    button: &str,
) -> String {
    format!(
        "<form method=\"post\" action=\"{a}\" data-passkey=\"{m}\" id=\"passkey-form\"><input type=\"hidden\" name=\"txn\" value=\"{t}\"><input type=\"hidden\" name=\"step\" value=\"{s}\">\
<input type=\"hidden\" name=\"options\" value=\"{o}\"><input type=\"hidden\" name=\"response\" value=\"\">{fields}<button type=\"submit\" id=\"passkey-go\">{b}</button></form>",
        a = attr(action),
        m = attr(mode),
        t = attr(txn),
        s = attr(step),
        o = attr(options),
        b = text(button)
    )
}

/// Sign in with a passkey (the browser asks the authenticator).
pub fn passkey(action: &str, txn: &str, options: &str, error: Option<&str>) -> String {
    let body = format!(
        "{e}<p>Use your passkey: your device will ask you to confirm it is you.</p>{f}<p class=\"err\" role=\"alert\" id=\"passkey-error\" hidden></p><script src=\"/static/passkey.js\" defer></script>",
        e = error_line(error),
        f = passkey_form(action, txn, "passkey", "get", options, "", "Use passkey")
    );
    layout("Use your passkey", &body)
}

/// The user's passkeys: list, remove, add.
pub fn manage_passkeys(action: &str, txn: &str, view: &usher_idp::login::PasskeyView) -> String {
    let mut list = String::new();
    for p in &view.passkeys {
        list.push_str(&format!(
            "<li class=\"passkey\" data-id=\"{id}\"><strong>{n}</strong> <span class=\"muted\">added {c}; last used {u}; counter {k}{b}</span>\
<form method=\"post\" action=\"{a}\"><input type=\"hidden\" name=\"txn\" value=\"{t}\"><input type=\"hidden\" name=\"step\" value=\"passkey-remove\"><input type=\"hidden\" name=\"id\" value=\"{id}\"><button type=\"submit\">Remove</button></form></li>",
            id = attr(&p.id),
            n = text(&p.name),
            c = text(&p.created),
            u = text(p.last_used.as_deref().unwrap_or("never")),
            k = p.sign_count,
            b = if p.backed_up { "; synced" } else { "" },
            a = attr(action),
            t = attr(txn),
        ));
    }
    let listing = if view.passkeys.is_empty() {
        "<p id=\"no-passkeys\">You have no passkeys yet.</p>".to_owned()
    } else {
        format!("<ul id=\"passkeys\">{list}</ul>")
    };
    let notice = view
        .notice
        .as_deref()
        .map(|n| format!("<p id=\"notice\">{}</p>", text(n)))
        .unwrap_or_default();
    let add = match &view.options {
        Some(o) => passkey_form(
            action,
            txn,
            "passkey-register",
            "create",
            o,
            "<label for=\"name\">Name</label><input id=\"name\" name=\"name\" value=\"Passkey\" maxlength=\"64\">",
            "Add a passkey",
        ),
        None => String::new(),
    };
    let body = format!(
        "<p class=\"muted\">{u}</p>{e}{notice}{listing}{add}<p class=\"err\" role=\"alert\" id=\"passkey-error\" hidden></p><script src=\"/static/passkey.js\" defer></script>",
        u = text(&view.upn),
        e = error_line(view.error.as_deref()),
    );
    layout("Your passkeys", &body)
}

/// A one-time code.
pub fn totp(action: &str, txn: &str, error: Option<&str>) -> String {
    let fields = format!(
        "{e}<p>Enter the code displayed in your authenticator app.</p><label for=\"code\">Code</label><input id=\"code\" name=\"code\" inputmode=\"numeric\" autocomplete=\"one-time-code\" pattern=\"[0-9]{{6}}\" required>",
        e = error_line(error)
    );
    layout("Enter code", &form(action, txn, "totp", &fields, "Verify"))
}

/// TOTP registration.
pub fn register_totp(action: &str, txn: &str, secret: &str, uri: &str, error: Option<&str>) -> String {
    let fields = format!(
        "{e}<p>Your organisation requires multi-factor authentication. Add this account to an authenticator app with the key below, then enter the code it shows.</p>\
<p>Key: <code id=\"totp-secret\">{s}</code></p><p class=\"muted\"><code id=\"totp-uri\">{u}</code></p>\
<label for=\"code\">Code</label><input id=\"code\" name=\"code\" inputmode=\"numeric\" autocomplete=\"one-time-code\" required>",
        e = error_line(error),
        s = text(secret),
        u = text(uri)
    );
    layout(
        "Set up your authenticator app",
        &form(action, txn, "register", &fields, "Next"),
    )
}

/// Forced password change.
pub fn change_password(action: &str, txn: &str, error: Option<&str>) -> String {
    let fields = format!(
        "{e}<p>You need to update your password because this is the first time you are signing in, or because your password has expired.</p>\
<label for=\"current\">Current password</label><input id=\"current\" name=\"current\" type=\"password\" autocomplete=\"current-password\" required>\
<label for=\"new\">New password</label><input id=\"new\" name=\"new\" type=\"password\" autocomplete=\"new-password\" required>",
        e = error_line(error)
    );
    layout(
        "Update your password",
        &form(action, txn, "change", &fields, "Sign in"),
    )
}

/// Device code entry.
pub fn device_code(error: Option<&str>) -> String {
    let body = format!(
        "{e}<p>Enter the code displayed on your app or device.</p><form method=\"post\" action=\"/devicelogin\"><label for=\"user_code\">Code</label><input id=\"user_code\" name=\"user_code\" autocomplete=\"off\" required><button type=\"submit\">Next</button></form>",
        e = error_line(error)
    );
    layout("Enter code", &body)
}

/// Device sign-in finished.
pub fn device_done(client: &str) -> String {
    layout(
        "You're signed in",
        &format!(
            "<p id=\"done\">You have signed in to {} on your device. You may now close this window.</p>",
            text(client)
        ),
    )
}

/// A message page.
pub fn message(title: &str, msg: &str) -> String {
    layout(title, &format!("<p id=\"message\">{}</p>", text(msg)))
}
