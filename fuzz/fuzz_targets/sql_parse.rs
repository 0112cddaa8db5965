//! The SQL parser on arbitrary text: never panics (nor overflows the stack
//! on deep nesting), and every syntax error points inside the text with a
//! caret.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pydb_query::Error;
use pydb_query::parser::{parse, render_span};

fuzz_target!(|data: &[u8]| {
    let sql = String::from_utf8_lossy(data);
    match parse(&sql) {
        Ok(_) | Err(Error::Invalid(_)) => {}
        Err(Error::Syntax { span, rendered, .. }) => {
            assert!(span.start <= span.end && span.end <= sql.len(), "{span:?}");
            assert!(sql.is_char_boundary(span.start) && sql.is_char_boundary(span.end));
            assert!(rendered.starts_with("line ") && rendered.contains('^'));
        }
        Err(other) => panic!("the parser returned a non-syntax error: {other:?}"),
    }
    // Rendering any span at all, even one from another text, is safe.
    if data.len() >= 2 {
        let span = pydb_query::ast::Span::new(usize::from(data[0]), usize::from(data[1]));
        let _ = render_span(&sql, span);
    }
});
