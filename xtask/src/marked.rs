//! Sections of a generated file that one command owns, between `<!-- NAME:start ... -->`
//! and `<!-- NAME:end -->` lines: `kernel-table --write` fills its sections of README.md and
//! BENCHMARKS.md, and `bench`, which rewrites BENCHMARKS.md whole, carries its section over.

/// A marked section: the start line (which says which command writes it) and the end line.
pub struct Marked {
    /// `<!-- NAME:start (command) -->`.
    pub start: &'static str,
    /// `<!-- NAME:end -->`.
    pub end: &'static str,
}

impl Marked {
    /// The section in `text`, markers included.
    pub fn find<'a>(&self, text: &'a str) -> Option<&'a str> {
        let s = text.find(self.start)?;
        let e = s + text[s..].find(self.end)? + self.end.len();
        Some(&text[s..e])
    }

    /// `text` with the section's body replaced by `body`, or with the section appended
    /// after a blank line when `text` has none.
    pub fn put(&self, text: &str, body: &str) -> String {
        let section = format!("{}\n{body}{}", self.start, self.end);
        match self.find(text) {
            Some(old) => text.replacen(old, &section, 1),
            None => format!("{}\n\n{section}\n", text.trim_end()),
        }
    }

    /// `new` with `old`'s section kept (appended) when `new` has none.
    pub fn carry(&self, old: &str, new: String) -> String {
        match (self.find(old), self.find(&new)) {
            (Some(s), None) => format!("{}\n\n{s}\n", new.trim_end()),
            _ => new,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const M: Marked = Marked {
        start: "<!-- t:start (x) -->",
        end: "<!-- t:end -->",
    };

    #[test]
    fn put_replaces_or_appends_and_carry_keeps() {
        let a = M.put("# Title\n", "one\n");
        assert_eq!(a, "# Title\n\n<!-- t:start (x) -->\none\n<!-- t:end -->\n");
        let b = M.put(&a, "two\n");
        assert_eq!(b, "# Title\n\n<!-- t:start (x) -->\ntwo\n<!-- t:end -->\n");
        assert_eq!(
            M.find(&b),
            Some("<!-- t:start (x) -->\ntwo\n<!-- t:end -->")
        );
        let c = M.carry(&b, "# New\n".into());
        assert_eq!(M.find(&c), M.find(&b));
        assert_eq!(M.carry("nothing", "# New\n".into()), "# New\n");
    }
}
