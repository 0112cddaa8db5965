//! The server's RESP2 request parser and the client's reply decoder on
//! arbitrary bytes: never panic, stay within their limits, and a request
//! they accept re-encodes to a request that parses back the same, however
//! the bytes are split.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pydb_server::server::resp::{Limits, Parsed, RequestParser, decode_reply, encode_request};

/// Small limits, so that the fuzzer reaches them.
const LIMITS: Limits = Limits {
    max_args: 8,
    max_bulk_len: 64,
    max_inline_len: 128,
};

fuzz_target!(|data: &[u8]| {
    let _ = decode_reply(data, &LIMITS);
    // The first byte chooses where the stream is split in two.
    let Some((&split, stream)) = data.split_first() else {
        return;
    };
    let split = usize::from(split).min(stream.len());
    let mut parser = RequestParser::new(LIMITS);
    let mut buffer = Vec::new();
    let mut requests = Vec::new();
    for piece in [&stream[..split], &stream[split..]] {
        buffer.extend_from_slice(piece);
        loop {
            match parser.parse(&buffer) {
                Ok(Parsed::Request { args, consumed }) => {
                    assert!(consumed > 0 && consumed <= buffer.len());
                    assert!(args.len() <= LIMITS.max_args.max(LIMITS.max_inline_len));
                    buffer.drain(..consumed);
                    requests.push(args);
                }
                Ok(Parsed::Incomplete) => break,
                Err(_) => return,
            }
        }
    }
    for args in requests
        .into_iter()
        .filter(|a| !a.is_empty() && a.len() <= LIMITS.max_args)
    {
        if args.iter().any(|a| a.len() > LIMITS.max_bulk_len) {
            continue;
        }
        let mut encoded = Vec::new();
        encode_request(&args, &mut encoded);
        match RequestParser::new(LIMITS).parse(&encoded) {
            Ok(Parsed::Request {
                args: again,
                consumed,
            }) => {
                assert_eq!(consumed, encoded.len());
                assert_eq!(again, args);
            }
            other => panic!("a re-encoded request did not parse back: {other:?}"),
        }
    }
});
