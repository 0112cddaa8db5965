//! The shell's tokenizer on arbitrary bytes: never panics, and every token
//! list it accepts survives quoting: `tokenize(join(quote(t))) == t`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pydb_server::tokenize::{quote, tokenize};

fuzz_target!(|data: &[u8]| {
    if let Ok(tokens) = tokenize(data) {
        let line: Vec<String> = tokens.iter().map(|t| quote(t)).collect();
        let again = tokenize(line.join(" ").as_bytes()).expect("quoted tokens must tokenize");
        assert_eq!(again, tokens);
    }
});
