//! `Client`: a blocking RESP2 connection to a server (pydb's or Redis's),
//! what `pydb shell --connect` uses.
//!
//! A request goes out as an array of bulk strings
//! ([`resp::encode_request`]); the reply is read until
//! [`resp::decode_reply`] finds a whole one, and comes back as the same
//! [`Reply`] the local shell prints. One request, one reply, in order: the
//! shell does not pipeline.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};

use crate::reply::Reply;
use crate::server::resp::{self, Limits};
use crate::{Error, Result};

/// A connection to a server.
#[derive(Debug)]
pub struct Client {
    stream: TcpStream,
    /// Received bytes not yet decoded.
    inbox: Vec<u8>,
    /// Where the connection goes, for error messages.
    peer: String,
}

impl Client {
    /// Connects to `addr` (`host:port`).
    pub fn connect(addr: &str) -> Result<Self> {
        let io = |e| Error::io(addr, e);
        let addrs = addr.to_socket_addrs().map_err(io)?;
        let mut last = None;
        for candidate in addrs {
            match TcpStream::connect(candidate) {
                Ok(stream) => {
                    stream.set_nodelay(true).map_err(io)?;
                    return Ok(Self {
                        stream,
                        inbox: Vec::new(),
                        peer: addr.to_string(),
                    });
                }
                Err(e) => last = Some(e),
            }
        }
        Err(io(last.unwrap_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::NotFound, "no address")
        })))
    }

    /// Sends one request and waits for its reply.
    pub fn call<A: AsRef<[u8]>>(&mut self, args: &[A]) -> Result<Reply> {
        let mut request = Vec::new();
        resp::encode_request(args, &mut request);
        self.stream
            .write_all(&request)
            .map_err(|e| Error::io(&self.peer, e))?;
        self.read_reply()
    }

    /// Reads the next reply.
    fn read_reply(&mut self) -> Result<Reply> {
        let mut chunk = [0u8; 16 * 1024];
        loop {
            let decoded = resp::decode_reply(&self.inbox, &Limits::DEFAULT)
                .map_err(|e| Error::InvalidArgument(format!("{}: {e}", self.peer)))?;
            if let Some((reply, used)) = decoded {
                self.inbox.drain(..used);
                return Ok(reply);
            }
            let n = self
                .stream
                .read(&mut chunk)
                .map_err(|e| Error::io(&self.peer, e))?;
            if n == 0 {
                return Err(Error::io(
                    &self.peer,
                    std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        "the server closed the connection",
                    ),
                ));
            }
            self.inbox
                .extend_from_slice(chunk.get(..n).unwrap_or_default());
        }
    }
}
