//! The PostgreSQL protocol's decoders on arbitrary bytes: the first
//! message (startup, SSL, cancel), framing with a length limit, every
//! frontend message type, and the SCRAM exchange's parsing of client
//! messages. They must never panic, never claim more bytes than they were
//! given, and keep to the limit.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pydb_server::pg::codec::{FrontendMessage, decode_startup, split_frame};
use pydb_server::pg::scram::{Exchange, ScramSecret};

/// A small limit, so that the fuzzer reaches it.
const MAX_LEN: usize = 256;

fuzz_target!(|data: &[u8]| {
    let _ = decode_startup(data);
    // Frame after frame, as a connection reads them.
    let mut rest = data;
    while let Ok(Some(frame)) = split_frame(rest, MAX_LEN) {
        assert!(frame.total >= 5 && frame.total <= rest.len());
        assert!(frame.total <= MAX_LEN + 1);
        assert_eq!(frame.body.len(), frame.total - 5);
        let _ = FrontendMessage::decode(frame.tag, frame.body);
        rest = &rest[frame.total..];
    }
    // Every message type on the whole input as a body.
    if let Some((&tag, body)) = data.split_first() {
        let _ = FrontendMessage::decode(tag, body);
    }
    // SCRAM: the input split in two at its first NUL is the client's
    // first and final messages.
    thread_local! {
        static SECRET: ScramSecret = ScramSecret::with_salt("pencil", [1; 16], 1);
    }
    SECRET.with(|secret| {
        let (first, last) = match data.iter().position(|&b| b == 0) {
            Some(nul) => (&data[..nul], &data[nul + 1..]),
            None => (data, &[][..]),
        };
        if let Ok((exchange, _server_first)) = Exchange::start(secret, first) {
            let _ = exchange.finish(secret, last);
        }
    });
});
