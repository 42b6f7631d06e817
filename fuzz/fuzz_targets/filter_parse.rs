//! The filter parser on arbitrary text: it must never panic, an error must be
//! one line, and a filter that parses must print back to itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nettop::Filter;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    match Filter::parse(text) {
        Ok(f) => {
            let again = Filter::parse(&f.to_string()).expect("a printed filter parses");
            assert_eq!(again, f, "{text:?} printed as {:?}", f.to_string());
        }
        Err(e) => assert!(!e.to_string().contains('\n'), "{e}"),
    }
});
