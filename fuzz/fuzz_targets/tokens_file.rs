//! The tokens file (`serve --tokens`). Holds: it loads or is refused with an
//! error naming the file; a loaded one refuses a secret it does not hold
//! and never panics on any Authorization header.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use pullstats::serve::tokens::{bearer, Role, Tokens};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let path = Path::new("tokens.toml");
    let tokens = match Tokens::from_text(path, text) {
        Ok(t) => t,
        Err(e) => {
            assert!(e.to_string().contains("tokens.toml"), "{e}");
            return;
        }
    };
    for header in [
        None,
        Some(""),
        Some("Bearer "),
        Some("Bearer pst_not_a_secret_in_any_file"),
        Some(text),
    ] {
        if let Some(h) = header {
            if let Some(secret) = bearer(Some(h)) {
                assert!(h.contains(secret));
            }
        }
        for role in [Role::Receive, Role::Read] {
            let got = tokens.authorize(header, role);
            if header == Some("Bearer pst_not_a_secret_in_any_file") || header.is_none() {
                assert!(got.is_err());
            }
        }
    }
    let _ = tokens.badges();
});
