//! One JSON object per line each way over the agent's Unix socket.
#![deny(unsafe_code)]

use std::fmt;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use usher_proto::local::{LocalReply, LocalRequest, MAX_LINE};
use zeroize::Zeroizing;

/// How long connecting may take (the agent's accept backlog is full).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long the agent may take to answer. Applies to the agent only: the user types answers
/// between a reply and the next request, while nothing is read.
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a request may wait for the agent to read it.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(10);

/// What went wrong talking to the agent. The texts name no secrets (nor any user input).
#[derive(Debug)]
pub enum TransportError {
    /// The socket could not be opened.
    Connect(io::Error),
    /// Reading or writing failed (including a timeout).
    Io(io::Error),
    /// The agent closed the connection.
    Closed,
    /// A line longer than [`MAX_LINE`].
    TooLong,
    /// A line that is not a [`LocalReply`].
    Malformed(serde_json::Error),
}

impl TransportError {
    /// Whether the agent is not there (rather than answering nonsense).
    pub fn is_unreachable(&self) -> bool {
        matches!(self, Self::Connect(_) | Self::Io(_) | Self::Closed)
    }
}

impl fmt::Display for TransportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Connect(e) => write!(f, "cannot connect to the agent: {e}"),
            Self::Io(e) => write!(f, "talking to the agent: {e}"),
            Self::Closed => f.write_str("the agent closed the connection"),
            Self::TooLong => write!(f, "a line longer than {MAX_LINE} bytes"),
            // serde_json's messages give positions and expectations, never the input.
            Self::Malformed(e) => write!(f, "the agent's answer is malformed: {e}"),
        }
    }
}

impl std::error::Error for TransportError {}

/// Requests out, replies in.
pub trait Transport {
    /// Sends one request (one line).
    fn send(&mut self, request: &LocalRequest) -> Result<(), TransportError>;
    /// Waits for the next reply (one line).
    fn recv(&mut self) -> Result<LocalReply, TransportError>;
}

/// The agent's socket.
#[derive(Debug)]
pub struct UnixTransport {
    stream: BufReader<UnixStream>,
}

impl UnixTransport {
    /// Connects with the standard timeouts.
    pub fn connect(path: &Path) -> Result<Self, TransportError> {
        Self::connect_with(path, CONNECT_TIMEOUT, REPLY_TIMEOUT)
    }

    /// Connects with the given timeouts.
    pub fn connect_with(path: &Path, connect: Duration, reply: Duration) -> Result<Self, TransportError> {
        let stream = crate::ffi::connect_unix(path, connect).map_err(TransportError::Connect)?;
        stream
            .set_read_timeout(Some(reply))
            .map_err(TransportError::Connect)?;
        stream
            .set_write_timeout(Some(SEND_TIMEOUT))
            .map_err(TransportError::Connect)?;
        Ok(Self::from_stream(stream))
    }

    /// Wraps a connected stream (its timeouts as they are).
    pub fn from_stream(stream: UnixStream) -> Self {
        Self {
            stream: BufReader::new(stream),
        }
    }
}

impl Transport for UnixTransport {
    fn send(&mut self, request: &LocalRequest) -> Result<(), TransportError> {
        write_line(&mut NoSigPipe(self.stream.get_ref()), request)
    }

    fn recv(&mut self) -> Result<LocalReply, TransportError> {
        let line = read_line(&mut self.stream)?;
        serde_json::from_slice(&line).map_err(TransportError::Malformed)
    }
}

/// Writes `request` and a newline in one write. The buffer may hold an answer (a password):
/// it is allocated once at full size and never grows (so serializing leaves no copies behind
/// in freed memory), and it is zeroed when dropped.
pub fn write_line(out: &mut impl Write, request: &LocalRequest) -> Result<(), TransportError> {
    let mut line = Zeroizing::new(Vec::with_capacity(MAX_LINE + 1));
    let mut bounded = Bounded(&mut line);
    if serde_json::to_writer(&mut bounded, request).is_err() {
        // The only way serializing a request fails is the bound.
        return Err(TransportError::TooLong);
    }
    line.push(b'\n');
    out.write_all(&line).map_err(TransportError::Io)?;
    out.flush().map_err(TransportError::Io)
}

/// Writes to the socket without raising `SIGPIPE` when the agent has gone (the application
/// may not ignore it, and it would kill the application).
struct NoSigPipe<'a>(&'a UnixStream);

impl Write for NoSigPipe<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        crate::ffi::send_no_sigpipe(self.0, buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A writer that refuses to take its buffer past [`MAX_LINE`] bytes.
struct Bounded<'a>(&'a mut Vec<u8>);

impl Write for Bounded<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.0.len().saturating_add(buf.len()) > MAX_LINE {
            return Err(io::Error::other("line too long"));
        }
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Reads one line (without its newline), at most [`MAX_LINE`] bytes before the newline.
pub fn read_line(input: &mut impl BufRead) -> Result<Vec<u8>, TransportError> {
    let mut line = Vec::new();
    let limit = u64::try_from(MAX_LINE).unwrap_or(u64::MAX).saturating_add(1);
    input
        .by_ref()
        .take(limit)
        .read_until(b'\n', &mut line)
        .map_err(TransportError::Io)?;
    match line.last() {
        Some(b'\n') => {
            line.pop();
            Ok(line)
        }
        _ if line.len() > MAX_LINE => Err(TransportError::TooLong),
        _ => Err(TransportError::Closed),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic, reason = "test code")]
mod tests {
    use std::io::Cursor;

    use usher_proto::local::Outcome;

    use super::*;

    #[test]
    fn lines_up_to_the_limit() {
        let mut exact = vec![b'x'; MAX_LINE];
        exact.push(b'\n');
        exact.extend_from_slice(b"next\n");
        let mut input = Cursor::new(exact);
        assert_eq!(read_line(&mut input).unwrap().len(), MAX_LINE);
        assert_eq!(read_line(&mut input).unwrap(), b"next");
        assert!(matches!(read_line(&mut input), Err(TransportError::Closed)));

        let mut long = vec![b'x'; MAX_LINE + 1];
        long.push(b'\n');
        assert!(matches!(
            read_line(&mut Cursor::new(long)),
            Err(TransportError::TooLong)
        ));
        // Half a line, then the end: the agent went away.
        assert!(matches!(
            read_line(&mut Cursor::new(b"{\"kind\"".to_vec())),
            Err(TransportError::Closed)
        ));
    }

    #[test]
    fn requests_are_one_line() {
        let mut out = Vec::new();
        let answer = LocalRequest::Answer {
            text: "pa\"ss\nword\u{1}".into(),
        };
        write_line(&mut out, &answer).unwrap();
        assert_eq!(out.iter().filter(|b| **b == b'\n').count(), 1);
        assert_eq!(out.last(), Some(&b'\n'));
        let back: LocalRequest = serde_json::from_slice(&out).unwrap();
        assert_eq!(back, answer);

        let huge = LocalRequest::Answer {
            text: "x".repeat(MAX_LINE),
        };
        let mut out = Vec::new();
        assert!(matches!(
            write_line(&mut out, &huge),
            Err(TransportError::TooLong)
        ));
        assert!(out.is_empty());
    }

    #[test]
    fn over_a_socket_pair() {
        let (a, b) = UnixStream::pair().unwrap();
        let mut t = UnixTransport::from_stream(a);
        let mut agent = BufReader::new(b);
        t.send(&LocalRequest::ChangePassword { user: "ann@x".into() })
            .unwrap();
        let line = read_line(&mut agent).unwrap();
        assert_eq!(
            serde_json::from_slice::<LocalRequest>(&line).unwrap(),
            LocalRequest::ChangePassword { user: "ann@x".into() }
        );
        agent
            .get_mut()
            .write_all(b"{\"kind\":\"done\",\"outcome\":\"denied\",\"message\":\"no\"}\nnot json\n")
            .unwrap();
        assert_eq!(
            t.recv().unwrap(),
            LocalReply::Done {
                outcome: Outcome::Denied,
                message: Some("no".into())
            }
        );
        let err = t.recv().unwrap_err();
        assert!(matches!(err, TransportError::Malformed(_)));
        assert!(!err.is_unreachable());
        drop(agent);
        assert!(t.recv().unwrap_err().is_unreachable());
    }

    #[test]
    fn reply_timeout() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.sock");
        let _listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let mut t = UnixTransport::connect_with(&path, CONNECT_TIMEOUT, Duration::from_millis(100)).unwrap();
        let start = std::time::Instant::now();
        match t.recv() {
            Err(TransportError::Io(e)) => assert!(
                matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut),
                "{e}"
            ),
            other => panic!("{other:?}"),
        }
        assert!(start.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn nobody_listening() {
        let dir = tempfile::tempdir().unwrap();
        let err = UnixTransport::connect(&dir.path().join("agent.sock")).unwrap_err();
        assert!(matches!(err, TransportError::Connect(_)), "{err}");
        assert!(err.is_unreachable());
    }
}
