//! The page's files, embedded in the binary (no front-end build step).

pub const APP_JS: &str = include_str!("assets/app.js");
pub const APP_CSS: &str = include_str!("assets/app.css");
pub const FAVICON: &str = "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 16 16\"><rect width=\"16\" height=\"16\" rx=\"3\" fill=\"#e0b44c\"/><path d=\"M4 12V4h2l4 5V4h2v8h-2L6 7v5z\" fill=\"#1b1405\"/></svg>";
const INDEX: &str = include_str!("assets/index.html");

/// The page, with this run's CSRF token; a static export loads its state
/// from `state.js` instead of the API.
pub fn page(csrf: &str, export: bool) -> String {
    INDEX.replace("{{CSRF}}", csrf).replace(
        "{{STATE_SCRIPT}}",
        if export {
            "<script src=\"state.js\"></script>"
        } else {
            ""
        },
    )
}
