//! `GET /api/openapi.json` (the OpenAPI 3 document `server::openapi` merges from every
//! domain's `Api`) and `GET /api/openapi` (Swagger UI). Swagger UI's files come from the
//! utoipa-swagger-ui crate (`vendored`: shipped inside the crate, so it works offline); the
//! document is rendered once per process.
use std::sync::{Arc, OnceLock};

use ntex::http::{header, StatusCode};
use ntex::util::Bytes;
use ntex::web::{self, HttpResponse};

use crate::error::{ErrorResponse, JSON};
use crate::server::resource;

/// Where the document is served; Swagger UI loads it from here.
pub const DOCUMENT_PATH: &str = "/api/openapi.json";
/// Where Swagger UI is served; its assets are below it.
pub const UI_PATH: &str = "/api/openapi";

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(resource(DOCUMENT_PATH).route(web::get().to(document)))
        .service(resource(UI_PATH).route(web::get().to(ui_index)))
        .service(resource("/api/openapi/").route(web::get().to(ui_index_slash)))
        .service(resource("/api/openapi/{file}").route(web::get().to(ui_file)));
}

/// The merged document as JSON, built on first use.
pub fn document_json() -> Bytes {
    static JSON_DOC: OnceLock<Bytes> = OnceLock::new();
    JSON_DOC
        .get_or_init(|| {
            let doc = crate::server::openapi();
            Bytes::from(doc.to_json().expect("BUG: the OpenAPI document serialises"))
        })
        .clone()
}

/// utoipa 6 leaves out the `description` of a response declared without one, which OpenAPI
/// 3.2 allows but 3.1, the version it writes, requires (openapi-spec-validator refuses the
/// document without it); such a response is given its status's reason phrase (`OK`, `Created`).
pub(crate) fn describe_every_response(doc: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::RefOr;
    for item in doc.paths.paths.values_mut() {
        let operations = [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.options,
            &mut item.head,
            &mut item.patch,
            &mut item.trace,
            &mut item.query,
        ];
        for operation in operations.into_iter().flatten() {
            for (status, response) in &mut operation.responses.responses {
                if let RefOr::T(response) = response {
                    if response.description.is_empty() {
                        response.description = status
                            .parse()
                            .ok()
                            .and_then(|code| StatusCode::from_u16(code).ok())
                            .and_then(|code| code.canonical_reason())
                            .unwrap_or("response")
                            .to_owned();
                    }
                }
            }
        }
    }
}

fn swagger_config() -> Arc<utoipa_swagger_ui::Config<'static>> {
    static CONFIG: OnceLock<Arc<utoipa_swagger_ui::Config<'static>>> = OnceLock::new();
    CONFIG
        .get_or_init(|| Arc::new(utoipa_swagger_ui::Config::new([DOCUMENT_PATH])))
        .clone()
}

/// The OpenAPI 3 document of every route this server registers.
#[utoipa::path(get, path = "/api/openapi.json", tag = "operations",
    responses((status = 200, description = "OpenAPI 3 document", content_type = "application/json")))]
async fn document() -> HttpResponse {
    HttpResponse::Ok().content_type(JSON).body(document_json())
}

/// Swagger UI for this document, served from the binary (works offline).
#[utoipa::path(get, path = "/api/openapi", tag = "operations",
    responses((status = 200, description = "Swagger UI", content_type = "text/html")))]
async fn ui_index() -> HttpResponse {
    // Its asset links are relative (`./swagger-ui.css`, and `index.css` without the `./`), which
    // from `/api/openapi` would point at `/api/`: a `<base>` puts every one of them, whatever
    // its spelling, under `/api/openapi/`, from either address of the page.
    static PAGE: OnceLock<Option<Bytes>> = OnceLock::new();
    let page = PAGE.get_or_init(|| {
        let file = utoipa_swagger_ui::serve("index.html", swagger_config()).ok()??;
        let html = String::from_utf8_lossy(&file.bytes).replacen(
            "<head>",
            "<head>\n    <base href=\"/api/openapi/\">",
            1,
        );
        Some(Bytes::from(html))
    });
    match page {
        Some(page) => HttpResponse::Ok()
            .content_type("text/html; charset=utf-8")
            .body(page.clone()),
        None => missing(),
    }
}

/// Swagger UI at the address with a trailing slash, which browsers and readers add.
#[utoipa::path(get, path = "/api/openapi/", tag = "operations",
    responses((status = 200, description = "Swagger UI", content_type = "text/html")))]
async fn ui_index_slash() -> HttpResponse {
    ui_index().await
}

/// Swagger UI's assets (scripts, styles, its initializer pointing at the document).
#[utoipa::path(get, path = "/api/openapi/{file}", tag = "operations",
    params(("file" = String, Path, description = "an asset of Swagger UI, e.g. swagger-ui.css")),
    responses((status = 200, description = "the asset"), (status = 404, body = ErrorResponse)))]
async fn ui_file(path: web::types::Path<String>) -> HttpResponse {
    match utoipa_swagger_ui::serve(path.as_str(), swagger_config()) {
        Ok(Some(file)) => {
            let mut res = HttpResponse::Ok();
            res.content_type(file.content_type.as_str());
            if file.gzpipped {
                res.header(header::CONTENT_ENCODING, "gzip");
            }
            res.body(Bytes::from(file.bytes.into_owned()))
        }
        Ok(None) => crate::error::ApiError::not_found().into_response(),
        Err(e) => {
            tracing::error!(error = %e, file = %path.as_str(), "swagger ui asset failed");
            missing()
        }
    }
}

fn missing() -> HttpResponse {
    crate::error::ApiError::from_static(
        StatusCode::INTERNAL_SERVER_ERROR,
        r#"{"error":"swagger ui unavailable"}"#,
    )
    .into_response()
}

/// The document and Swagger UI, as OpenAPI paths.
#[derive(utoipa::OpenApi)]
#[openapi(paths(document, ui_index, ui_index_slash, ui_file))]
pub struct Api;

#[cfg(test)]
mod tests {
    use serde_json::Value;

    fn document() -> Value {
        serde_json::from_slice(&super::document_json()).expect("the document is JSON")
    }

    /// `schema` itself, or the component its `$ref` names.
    fn resolve<'a>(doc: &'a Value, schema: &'a Value) -> &'a Value {
        match schema["$ref"].as_str() {
            Some(target) => doc
                .pointer(target.trim_start_matches('#'))
                .unwrap_or_else(|| panic!("{target} names no component")),
            None => schema,
        }
    }

    fn every_ref<'a>(value: &'a Value, out: &mut Vec<&'a str>) {
        match value {
            Value::Object(fields) => {
                if let Some(Value::String(target)) = fields.get("$ref") {
                    out.push(target);
                }
                fields.values().for_each(|v| every_ref(v, out));
            }
            Value::Array(items) => items.iter().for_each(|v| every_ref(v, out)),
            _ => {}
        }
    }

    #[test]
    fn every_reference_in_the_document_names_a_component() {
        let doc = document();
        let mut refs = Vec::new();
        every_ref(&doc, &mut refs);
        assert!(!refs.is_empty());
        for target in refs {
            assert!(
                doc.pointer(target.trim_start_matches('#')).is_some(),
                "{target} names no component"
            );
        }
    }

    /// A body documented as a bare string gets a schema-driven client (schemathesis) to send
    /// only strings, which every handler refuses before reading a field.
    #[test]
    fn every_json_request_body_is_an_object_naming_its_fields() {
        let doc = document();
        let mut bodies = 0;
        for (path, operations) in doc["paths"].as_object().expect("paths") {
            for (method, operation) in operations.as_object().expect("operations") {
                let Some(schema) =
                    operation.pointer("/requestBody/content/application~1json/schema")
                else {
                    continue;
                };
                bodies += 1;
                let schema = resolve(&doc, schema);
                assert_eq!(schema["type"], "object", "{method} {path}: {schema}");
                let fields = schema["properties"]
                    .as_object()
                    .filter(|fields| !fields.is_empty())
                    .unwrap_or_else(|| panic!("{method} {path} names no field: {schema}"));
                for name in schema["required"].as_array().into_iter().flatten() {
                    let name = name.as_str().expect("required names are strings");
                    assert!(
                        fields.contains_key(name),
                        "{method} {path} requires {name}, which it does not describe"
                    );
                }
            }
        }
        // people 1, accounts 1, users 4, chat 4.
        assert_eq!(bodies, 10);
    }

    #[test]
    fn every_response_has_a_description_as_openapi_3_1_requires() {
        let doc = document();
        assert_eq!(doc["openapi"], "3.1.0");
        for (path, operations) in doc["paths"].as_object().expect("paths") {
            for (method, operation) in operations.as_object().expect("operations") {
                for (status, response) in operation["responses"].as_object().expect("responses") {
                    let description = response["description"].as_str().unwrap_or_default();
                    assert!(!description.is_empty(), "{method} {path} {status}");
                }
            }
        }
    }
}
