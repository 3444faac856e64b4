//! `usher-principals USER CERTIFICATE`: sshd's `AuthorizedPrincipalsCommand` (`%u %k`). It asks
//! the machine's agent over its local socket and prints the principals the agent allows (none:
//! refused). It always exits 0, as sshd refuses on any other status anyway; the agent logs why.

use std::io::{BufRead as _, BufReader, Write as _};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use usher_proto::local::{DEFAULT_SOCKET, LOGIN_CONF, LocalReply, LocalRequest, MAX_LINE};

/// The socket the login configuration names.
fn socket_path() -> String {
    std::fs::read_to_string(LOGIN_CONF)
        .ok()
        .and_then(|t| {
            t.lines().find_map(|l| {
                let (k, v) = l.split_once('=')?;
                (k.trim() == "agent_socket").then(|| v.trim().trim_matches('"').to_owned())
            })
        })
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| DEFAULT_SOCKET.to_owned())
}

fn ask(user: String, certificate: String) -> std::io::Result<Vec<String>> {
    let mut stream = UnixStream::connect(socket_path())?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    stream.set_write_timeout(Some(Duration::from_secs(10)))?;
    let mut line = serde_json::to_vec(&LocalRequest::Principals { user, certificate })?;
    line.push(b'\n');
    stream.write_all(&line)?;
    let mut reply = String::new();
    BufReader::new(std::io::Read::take(&stream, MAX_LINE as u64)).read_line(&mut reply)?;
    match serde_json::from_str(&reply)? {
        LocalReply::Principals { principals } => Ok(principals),
        _ => Ok(vec![]),
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let (Some(user), Some(certificate)) = (args.next(), args.next()) else {
        eprintln!("usage: usher-principals USER CERTIFICATE (sshd: AuthorizedPrincipalsCommand ... %u %k)");
        return;
    };
    match ask(user, certificate) {
        Ok(principals) => {
            for p in principals.iter().filter(|p| !p.contains(['\n', '\r'])) {
                println!("{p}");
            }
        }
        Err(e) => eprintln!("usher-principals: the agent cannot be asked: {e}"),
    }
}
