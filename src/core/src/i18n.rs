//! Translations. Every sentence a person reads goes through [`tr`] or [`trf`], which
//! `po/update-pot` extracts with xgettext (`--keyword=tr --keyword=trf`).
//!
//! Placeholders are named (`{device}`), so a translation may reorder them.

use gettextrs::{
    bind_textdomain_codeset, bindtextdomain, gettext, setlocale, textdomain, LocaleCategory,
};
use std::sync::Once;

/// The gettext domain: `passage.mo`.
pub const DOMAIN: &str = "passage";

/// Where installed catalogs live; `make install` bakes the prefix in, a source checkout uses
/// `PASSAGE_LOCALEDIR` (set by the test scripts to the freshly built catalogs).
pub const DEFAULT_LOCALEDIR: &str = match option_env!("PASSAGE_LOCALEDIR") {
    Some(d) => d,
    None => "/usr/local/share/locale",
};

/// Sets up the locale from the environment. Safe to call more than once.
pub fn init() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        setlocale(LocaleCategory::LcAll, "");
        let dir = std::env::var("PASSAGE_LOCALEDIR").unwrap_or_else(|_| DEFAULT_LOCALEDIR.into());
        // Failure leaves messages in English, which is the right fallback.
        let _ = bindtextdomain(DOMAIN, dir);
        let _ = bind_textdomain_codeset(DOMAIN, "UTF-8");
        let _ = textdomain(DOMAIN);
    });
}

/// Translates a message.
pub fn tr(msgid: &str) -> String {
    gettext(msgid)
}

/// Translates a message and fills its `{name}` placeholders.
pub fn trf(msgid: &str, args: &[(&str, &str)]) -> String {
    let mut s = gettext(msgid);
    for (k, v) in args {
        s = s.replace(&format!("{{{k}}}"), v);
    }
    s
}

#[cfg(test)]
mod tests {
    #[test]
    fn placeholders_are_filled_by_name() {
        assert_eq!(
            super::trf("{b} then {a}", &[("a", "1"), ("b", "2")]),
            "2 then 1"
        );
    }
}
