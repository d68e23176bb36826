//! The HTML report (next step).

use super::compare::Comparison;
use super::summary::Summary;

/// `summary` as one self-contained page.
pub fn render(summary: &Summary, comparison: Option<&Comparison>) -> String {
    format!("<pre>{}</pre>", super::md::render(summary, comparison).replace('<', "&lt;"))
}
