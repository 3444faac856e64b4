//! Where the agent's socket is: the module's arguments (`socket=`, `conf=`), then
//! `agent_socket` in the login configuration, then [`DEFAULT_SOCKET`].
#![deny(unsafe_code)]

use std::path::{Path, PathBuf};

use usher_proto::local::{DEFAULT_SOCKET, LOGIN_CONF};

/// The module's arguments from the PAM configuration line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Args {
    /// `socket=/path`: the agent's socket, overriding the configuration.
    pub socket: Option<PathBuf>,
    /// `conf=/path`: the login configuration to read instead of [`LOGIN_CONF`].
    pub conf: Option<PathBuf>,
    /// Arguments that were not understood (logged, never fatal).
    pub ignored: Vec<String>,
}

impl Args {
    /// Parses `argv`. Paths must be absolute; anything else is ignored.
    pub fn parse<S: AsRef<str>>(argv: &[S]) -> Args {
        let mut args = Args::default();
        for arg in argv {
            let arg = arg.as_ref();
            let path = |v: &str| Some(PathBuf::from(v)).filter(|p| p.is_absolute());
            match arg.split_once('=') {
                Some(("socket", v)) if path(v).is_some() => args.socket = path(v),
                Some(("conf", v)) if path(v).is_some() => args.conf = path(v),
                _ => args.ignored.push(arg.to_owned()),
            }
        }
        args
    }

    /// The agent's socket.
    pub fn socket_path(&self) -> PathBuf {
        if let Some(socket) = &self.socket {
            return socket.clone();
        }
        let conf = self.conf.as_deref().unwrap_or(Path::new(LOGIN_CONF));
        std::fs::read_to_string(conf)
            .ok()
            .and_then(|text| agent_socket(&text))
            .unwrap_or_else(|| PathBuf::from(DEFAULT_SOCKET))
    }
}

/// `agent_socket` from the login configuration, if it is there and absolute.
pub fn agent_socket(text: &str) -> Option<PathBuf> {
    value(text, "agent_socket")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
}

/// The value of a top-level `key = "value"` line of a small TOML-like file: `#` comments,
/// blank lines, basic (`"..."`, with `\"` and `\\`) or literal (`'...'`) strings. Keys after a
/// `[table]` header belong to that table and are not top-level. The last occurrence wins.
pub fn value(text: &str, key: &str) -> Option<String> {
    let mut found = None;
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            break;
        }
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((k, v)) = line.split_once('=') else {
            continue;
        };
        if k.trim().trim_matches('"') != key {
            continue;
        }
        if let Some(v) = string(v.trim()) {
            found = Some(v);
        }
    }
    found
}

/// A quoted string at the start of `v`; what follows it may only be a comment.
fn string(v: &str) -> Option<String> {
    let mut chars = v.chars();
    let quote = chars.next().filter(|c| *c == '"' || *c == '\'')?;
    let mut out = String::new();
    loop {
        match chars.next()? {
            c if c == quote => break,
            '\\' if quote == '"' => match chars.next()? {
                '"' => out.push('"'),
                '\\' => out.push('\\'),
                _ => return None,
            },
            c => out.push(c),
        }
    }
    let rest = chars.as_str().trim();
    (rest.is_empty() || rest.starts_with('#')).then_some(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "test code")]
mod tests {
    use super::*;

    #[test]
    fn socket_argument() {
        let a = Args::parse(&["socket=/tmp/x/agent.sock", "debug"]);
        assert_eq!(a.socket, Some(PathBuf::from("/tmp/x/agent.sock")));
        assert_eq!(a.conf, None);
        assert_eq!(a.ignored, vec!["debug".to_owned()]);
        assert_eq!(a.socket_path(), PathBuf::from("/tmp/x/agent.sock"));
        // Relative paths and empty values are ignored, not used against the caller's cwd.
        let a = Args::parse(&["socket=agent.sock", "socket=", "conf=x.conf"]);
        assert_eq!(
            a,
            Args {
                ignored: vec!["socket=agent.sock".into(), "socket=".into(), "conf=x.conf".into()],
                ..Args::default()
            }
        );
        assert_eq!(Args::parse::<&str>(&[]).socket, None);
    }

    #[test]
    fn conf_argument_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let conf = dir.path().join("login.conf");
        std::fs::write(
            &conf,
            "# managed\nserver = \"https://x\"\nagent_socket = \"/run/elsewhere.sock\"\n",
        )
        .unwrap();
        let arg = format!("conf={}", conf.display());
        assert_eq!(
            Args::parse(&[arg.as_str()]).socket_path(),
            PathBuf::from("/run/elsewhere.sock")
        );
        // socket= wins over the file.
        assert_eq!(
            Args::parse(&[arg.as_str(), "socket=/run/a.sock"]).socket_path(),
            PathBuf::from("/run/a.sock")
        );
        // A file without the key, or no file: the default.
        std::fs::write(&conf, "server = \"https://x\"\n").unwrap();
        assert_eq!(
            Args::parse(&[arg.as_str()]).socket_path(),
            PathBuf::from(DEFAULT_SOCKET)
        );
        let missing = format!("conf={}", dir.path().join("nope").display());
        assert_eq!(
            Args::parse(&[missing.as_str()]).socket_path(),
            PathBuf::from(DEFAULT_SOCKET)
        );
    }

    #[test]
    fn parses_the_login_configuration() {
        let text = "# usher-agent manages this file\n\
                    server = \"https://usher.example\"\n\
                    tenant_id = \"t\"\n\
                    \n\
                    agent_socket   =   \"/run/usher/a.sock\"   # the agent\n";
        assert_eq!(agent_socket(text), Some(PathBuf::from("/run/usher/a.sock")));
        assert_eq!(value(text, "tenant_id").as_deref(), Some("t"));
        assert_eq!(
            value("agent_socket = '/x\\y'", "agent_socket").as_deref(),
            Some("/x\\y")
        );
        assert_eq!(value(r#"k = "a\"b\\c""#, "k").as_deref(), Some("a\"b\\c"));
        assert_eq!(value("k = \"a\"\nk = \"b\"", "k").as_deref(), Some("b"));
        // Not top-level, commented out, unquoted, unterminated, trailing junk, relative.
        assert_eq!(agent_socket("[x]\nagent_socket = \"/a\""), None);
        assert_eq!(agent_socket("# agent_socket = \"/a\""), None);
        assert_eq!(agent_socket("agent_socket = /a"), None);
        assert_eq!(agent_socket("agent_socket = \"/a"), None);
        assert_eq!(agent_socket("agent_socket = \"/a\" junk"), None);
        assert_eq!(agent_socket("agent_socket = \"a.sock\""), None);
        assert_eq!(agent_socket("agent_socket_x = \"/a\""), None);
    }
}
