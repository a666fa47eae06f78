//! The report as one HTML page: the Markdown report rendered by
//! pulldown-cmark (CommonMark with GFM tables), so both formats say the
//! same thing. Values reach the HTML only as escaped text: the Markdown
//! writes them as code spans or escaped text, never as raw HTML, and the
//! renderer escapes `<`, `>`, `&` and quotes in text and code.

use super::RunReport;

/// The report as a standalone HTML page.
pub fn html(r: &RunReport) -> String {
    use pulldown_cmark::{Options, Parser, html::push_html};
    let md = super::markdown(r);
    let mut body = String::with_capacity(md.len() * 2);
    push_html(&mut body, Parser::new_ext(&md, Options::ENABLE_TABLES));
    let title = escape_html(&format!("Run report: {} ({})", r.run.playbook, r.run.id));
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>{title}</title>\n<style>\nbody {{ font-family: sans-serif; margin: 2em; }}\ntable {{ border-collapse: collapse; margin-bottom: 1em; }}\nth, td {{ border: 1px solid #ccc; padding: 0.25em 0.5em; text-align: left; vertical-align: top; }}\ncode {{ font-family: monospace; }}\n</style>\n</head>\n<body>\n{body}</body>\n</html>\n"
    )
}

/// `s` as HTML text (control characters made visible).
fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if c.is_control() => out.push_str(&format!("\\u{{{:x}}}", u32::from(c))),
            c => out.push(c),
        }
    }
    out
}
