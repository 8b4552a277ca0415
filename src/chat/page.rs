//! `GET /chat`: a chat client for browsers — one HTML page, its script and its style,
//! written by hand and compiled into the binary, so every replica serves the same files with no
//! build step, CDN or file on disk. The page speaks only the public API (`/register`, `/login`,
//! `/chats`, `/messages`, `/ws/updates/{groupId}`) through root-relative URLs, so it works
//! through nginx on any port and on a replica's own port alike.
use ntex::http::header;
use ntex::util::Bytes;
use ntex::web::{self, HttpRequest, HttpResponse};

use crate::error::{ApiError, ErrorResponse};
use crate::server::resource;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/chat").route(web::get().to(page)))
        .service(resource("/chat/{file}").route(web::get().to(asset)));
}

/// A file of the page, with the validator a browser revalidates it by.
struct Asset {
    body: &'static str,
    content_type: &'static str,
    /// Quoted, as it goes in the header.
    etag: [u8; 18],
}

impl Asset {
    fn etag(&self) -> &str {
        std::str::from_utf8(&self.etag).expect("BUG: an ETag is quotes and hex digits")
    }
}

static PAGE: Asset = asset_of(include_str!("page.html"), "text/html; charset=utf-8");
static SCRIPT: Asset = asset_of(
    include_str!("page.js"),
    "application/javascript; charset=utf-8",
);
static STYLE: Asset = asset_of(include_str!("page.css"), "text/css; charset=utf-8");

/// Revalidate every time, answered 304 while the ETag matches: the asset URLs carry no
/// version, and during a rolling update a page from a new replica may fetch its script from an
/// old one, so a browser must never keep a copy it has not checked. A 304 costs a round trip
/// of a few hundred bytes.
const CACHE_CONTROL: &str = "no-cache";

/// The page runs only its own script and style and talks only to its own origin (`'self'`
/// includes the same host's `ws:`); no form submits anywhere, so a script that failed to load
/// cannot send a password in a URL.
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; img-src 'self' data:; \
     base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// The chat page.
#[utoipa::path(get, path = "/chat", operation_id = "chat_page", tag = "chat",
    responses((status = 200, description = "the chat page", content_type = "text/html"),
        (status = 304, description = "the copy the browser holds (If-None-Match) is current")))]
async fn page(req: HttpRequest) -> HttpResponse {
    serve(&req, &PAGE)
}

/// The page's script (`page.js`) and style (`page.css`).
#[utoipa::path(get, path = "/chat/{file}", operation_id = "chat_page_file", tag = "chat",
    params(("file" = String, Path, description = "page.js or page.css", example = "page.js")),
    responses((status = 200, description = "the file"),
        (status = 304, description = "the copy the browser holds (If-None-Match) is current"),
        (status = 404, body = ErrorResponse)))]
async fn asset(req: HttpRequest, file: web::types::Path<String>) -> HttpResponse {
    match file.as_str() {
        "page.js" => serve(&req, &SCRIPT),
        "page.css" => serve(&req, &STYLE),
        _ => ApiError::not_found().into_response(),
    }
}

fn serve(req: &HttpRequest, asset: &Asset) -> HttpResponse {
    let mut res = if is_current(req, asset.etag()) {
        HttpResponse::NotModified()
    } else {
        let mut res = HttpResponse::Ok();
        res.content_type(asset.content_type);
        res
    };
    res.header(header::ETAG, asset.etag())
        .header(header::CACHE_CONTROL, CACHE_CONTROL)
        .header(header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    if asset.content_type.starts_with("text/html") {
        res.header(header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY)
            .header(header::REFERRER_POLICY, "no-referrer");
    }
    res.body(Bytes::from_static(asset.body.as_bytes()))
}

/// Whether the request's `If-None-Match` names `etag` (or is `*`); weak tags compare as strong
/// ones, as RFC 9110 says a GET's If-None-Match does.
fn is_current(req: &HttpRequest, etag: &str) -> bool {
    req.headers()
        .get_all(header::IF_NONE_MATCH)
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|tag| tag.trim().trim_start_matches("W/"))
        .any(|tag| tag == etag || tag == "*")
}

const fn asset_of(body: &'static str, content_type: &'static str) -> Asset {
    Asset {
        body,
        content_type,
        etag: etag_of(body),
    }
}

/// A quoted hex FNV-1a hash of `body`, computed at compile time: the same build gives every
/// replica the same tag, and any edit to a file changes its tag.
const fn etag_of(body: &str) -> [u8; 18] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let bytes = body.as_bytes();
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut i = 0;
    while i < bytes.len() {
        hash = (hash ^ bytes[i] as u64).wrapping_mul(0x0100_0000_01b3);
        i += 1;
    }
    let mut tag = [b'"'; 18];
    let mut d = 0;
    while d < 16 {
        tag[1 + d] = HEX[((hash >> (60 - 4 * d)) & 0xf) as usize];
        d += 1;
    }
    tag
}

#[cfg(test)]
mod tests {
    use ntex::web::test::TestRequest;

    use super::*;

    #[test]
    fn an_etag_is_a_quoted_hex_hash_that_changes_with_the_file() {
        let tag = SCRIPT.etag();
        assert_eq!(tag.len(), 18);
        assert!(tag.starts_with('"') && tag.ends_with('"'), "{tag}");
        assert!(tag[1..17].bytes().all(|b| b.is_ascii_hexdigit()), "{tag}");
        assert_ne!(etag_of("a"), etag_of("b"));
        assert_ne!(PAGE.etag(), STYLE.etag());
    }

    #[test]
    fn if_none_match_holding_the_tag_weak_or_in_a_list_or_a_star_is_current() {
        let tag = PAGE.etag();
        let current = |value: &str| {
            let req = TestRequest::default()
                .header(header::IF_NONE_MATCH, value)
                .to_http_request();
            is_current(&req, tag)
        };
        assert!(current(tag));
        assert!(current(&format!("W/{tag}")));
        assert!(current(&format!(r#""0000000000000000", {tag}"#)));
        assert!(current("*"));
        assert!(!current(r#""0000000000000000""#));
        assert!(!is_current(&TestRequest::default().to_http_request(), tag));
    }
}
