//! The gfp name table of a tracepoint's `print fmt`: a small evaluator for the C mask
//! expressions the kernel prints there. Split from `decode` because it is a parser, not a
//! decoder; `analyze::gfp_layout` uses it.

/// Reads the `__print_flags(REC->gfp_flags, "|", {mask, "NAME"}, ...)` table out of a
/// tracepoint's `print fmt` (mm_vmscan_direct_reclaim_begin prints one): the kernel's own
/// names, order and composite values. Masks are C expressions of numbers, casts, `|`, `&`,
/// `~` and `<<`. `None` when the text has no such table or an entry does not evaluate.
pub fn parse_gfp_name_table(print_fmt: &str) -> Option<Vec<(String, u32)>> {
    let start = print_fmt.find("__print_flags(REC->gfp_flags")?;
    let mut rest = &print_fmt[start..];
    let mut out = Vec::new();
    while let Some(open) = rest.find('{') {
        let close = open + rest[open..].find('}')?;
        let entry = &rest[open + 1..close];
        rest = &rest[close + 1..];
        let (expr, name) = entry.rsplit_once(',')?;
        let name = name.trim().trim_matches('"');
        if name.contains("void") || expr.trim() == "0" {
            break; // the { 0, NULL } terminator
        }
        let v = eval_mask(expr)?;
        if v != 0 {
            out.push((name.to_string(), u32::try_from(v).ok()?));
        }
    }
    (out.len() >= 8).then_some(out)
}

/// Evaluates a mask expression as printed in a format file.
fn eval_mask(expr: &str) -> Option<u64> {
    let mut s = expr.to_string();
    for cast in [
        "( unsigned long)",
        "(unsigned long)",
        "( gfp_t)",
        "(gfp_t)",
        "(__force gfp_t)",
    ] {
        s = s.replace(cast, "");
    }
    let toks = tokenize(&s)?;
    let mut p = Parser { toks: &toks, i: 0 };
    let v = p.or()?;
    (p.i == toks.len()).then_some(v)
}

#[derive(Clone, Debug, PartialEq)]
enum Tok {
    Num(u64),
    Op(&'static str),
}

fn tokenize(s: &str) -> Option<Vec<Tok>> {
    let b = s.as_bytes();
    let mut i = 0;
    let mut out = Vec::new();
    while i < b.len() {
        let c = b[i] as char;
        if c.is_whitespace() {
            i += 1;
        } else if c.is_ascii_digit() {
            let st = i;
            while i < b.len() && (b[i] as char).is_ascii_alphanumeric() {
                i += 1;
            }
            let lit = s[st..i].trim_end_matches(['u', 'U', 'l', 'L']);
            let v = match lit.strip_prefix("0x").or_else(|| lit.strip_prefix("0X")) {
                Some(h) => u64::from_str_radix(h, 16).ok()?,
                None => lit.parse().ok()?,
            };
            out.push(Tok::Num(v));
        } else if s[i..].starts_with("<<") {
            out.push(Tok::Op("<<"));
            i += 2;
        } else {
            let op = match c {
                '|' => "|",
                '&' => "&",
                '~' => "~",
                '(' => "(",
                ')' => ")",
                _ => return None,
            };
            out.push(Tok::Op(op));
            i += 1;
        }
    }
    Some(out)
}

/// C precedence: `~` > `<<` > `&` > `|`.
struct Parser<'a> {
    toks: &'a [Tok],
    i: usize,
}

impl Parser<'_> {
    fn eat(&mut self, op: &'static str) -> bool {
        let hit = self.toks.get(self.i) == Some(&Tok::Op(op));
        if hit {
            self.i += 1;
        }
        hit
    }

    fn or(&mut self) -> Option<u64> {
        let mut v = self.and()?;
        while self.eat("|") {
            v |= self.and()?;
        }
        Some(v)
    }

    fn and(&mut self) -> Option<u64> {
        let mut v = self.shift()?;
        while self.eat("&") {
            v &= self.shift()?;
        }
        Some(v)
    }

    fn shift(&mut self) -> Option<u64> {
        let mut v = self.unary()?;
        while self.eat("<<") {
            let n = self.unary()?;
            v = v.checked_shl(u32::try_from(n).ok()?)?;
        }
        Some(v)
    }

    fn unary(&mut self) -> Option<u64> {
        if self.eat("~") {
            return Some(!self.unary()?);
        }
        if self.eat("(") {
            let v = self.or()?;
            return self.eat(")").then_some(v);
        }
        match self.toks.get(self.i)? {
            Tok::Num(n) => {
                self.i += 1;
                Some(*n)
            }
            Tok::Op(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::decode::{format_gfp, GfpLayout};
    use super::*;

    #[test]
    fn name_table_expressions() {
        assert_eq!(
            eval_mask("( unsigned long)((( gfp_t)(0x400u|0x800u)) | (( gfp_t)0x40u))"),
            Some(0xc40)
        );
        assert_eq!(eval_mask("(((1UL))) << (10)"), Some(0x400));
        assert_eq!(
            eval_mask("(0xcc0u) & ~(( gfp_t)(0x400u|0x800u))"),
            Some(0xc0)
        );
        assert_eq!(eval_mask("1 +"), None);
        let fmt = r#"print fmt: "x=%s", (REC->gfp_flags) ? __print_flags(REC->gfp_flags, "|", {( unsigned long)((( gfp_t)((((1UL))) << (11))) | (( gfp_t)((((1UL))) << (13)))), "GFP_NOWAIT"}, {( unsigned long)(( gfp_t)((((1UL))) << (13))), "__GFP_NOWARN"}, {1, "A"}, {2, "B"}, {4, "C"}, {8, "D"}, {16, "E"}, {32, "F"}, { 0, ((void *)0) } ) : "none""#;
        let t = parse_gfp_name_table(fmt).unwrap();
        assert_eq!(t[0], ("GFP_NOWAIT".to_string(), 0x2800));
        let mut l = GfpLayout::default_for_6x();
        l.names = Some(t);
        assert_eq!(format_gfp(0x2800, &l), "GFP_NOWAIT");
        assert!(parse_gfp_name_table("no table").is_none());
    }
}
