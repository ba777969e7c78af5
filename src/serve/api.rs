//! The service's HTTP routes: the original app's search API (`/api/v1/search/text`, `/image`,
//! `/vector`), products and their photos, events, the search page, health, metrics and reload.
//!
//! Every bad request is answered 4xx with `{"error": …, "field": …}` naming what is wrong, and
//! logs nothing. Request values never become SQL text: searches go through the in-process API
//! with filters built as expressions.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, MatchedPath, Multipart, Path, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use datafusion::common::ScalarValue;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use super::events::{EventError, EventKind, Record};
use super::metrics::RequestLabels;
use super::products::{json_rows, Product, PRODUCT_ID};
use super::variant::{variant_for, Variant};
use super::Service;
use crate::catalog::TableName;
use crate::vector::filter::RowFilter;
use crate::vector::index::IndexEntry;
use crate::vector::statements::index_entry;

/// The most results one search returns.
pub const MAX_LIMIT: usize = 100;
/// Results when the request gives no `limit`.
pub const DEFAULT_LIMIT: usize = 20;
/// The longest user id.
const MAX_USER_ID_CHARS: usize = 200;

/// The search page.
const PAGE: &str = include_str!("page.html");

/// A request that cannot be answered, as the client sees it.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    field: Option<String>,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, field: Option<&str>, message: impl Into<String>) -> Self {
        Self {
            status,
            field: field.map(str::to_string),
            message: message.into(),
        }
    }

    fn bad(field: &str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, Some(field), message)
    }

    fn internal(error: impl std::fmt::Display) -> Self {
        tracing::error!("search service: {error}");
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, None, error.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = match &self.field {
            Some(field) => json!({ "error": self.message, "field": field }),
            None => json!({ "error": self.message }),
        };
        (self.status, Json(body)).into_response()
    }
}

impl From<EventError> for ApiError {
    fn from(error: EventError) -> Self {
        let message = error.to_string();
        match error {
            EventError::UnknownSearch(_) => {
                Self::new(StatusCode::NOT_FOUND, Some("search_id"), message)
            }
            EventError::NotShown { .. } => Self::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                Some("product_id"),
                message,
            ),
            EventError::BadTime(_) => Self::bad("at", message),
            EventError::Unavailable(_) => Self::new(StatusCode::SERVICE_UNAVAILABLE, None, message),
        }
    }
}

type Answer<T> = Result<T, ApiError>;

/// The routes over `service`.
pub fn router(service: Arc<Service>) -> Router {
    let limits = service.config().limits.clone();
    Router::new()
        .route("/", get(page))
        .route("/api/v1/search/text", post(search_text))
        .route("/api/v1/search/vector", post(search_vector))
        .route("/api/v1/search/image", post(search_image))
        .route("/api/v1/products/{id}", get(product))
        .route("/images/{id}", get(image))
        .route("/api/v1/events", post(event))
        .route("/healthz", get(health))
        .route("/metrics", get(metrics))
        .route("/admin/reload", post(reload))
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, None, "no such route") })
        .layer(middleware::from_fn_with_state(
            Arc::clone(&service),
            observe,
        ))
        // Uploads are read whole; the multipart framing takes a little beyond the photo.
        .layer(DefaultBodyLimit::max(limits.max_upload_bytes + 64 * 1024))
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            Duration::from_secs_f64(limits.request_timeout_s),
        ))
        .layer(middleware::map_response(close_after_unread_body))
        .with_state(service)
}

/// Marks the answers given before a request's body was read to its end (too large, out of
/// time) `Connection: close`: the server drops such a connection, and without the header a
/// client would put it back in its pool and lose its next request on it.
async fn close_after_unread_body(mut response: Response) -> Response {
    if matches!(
        response.status(),
        StatusCode::PAYLOAD_TOO_LARGE | StatusCode::REQUEST_TIMEOUT
    ) {
        response.headers_mut().insert(
            header::CONNECTION,
            header::HeaderValue::from_static("close"),
        );
    }
    response
}

/// Counts and times every request by route, status and variant.
async fn observe(State(service): State<Arc<Service>>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |p| p.as_str().to_string());
    let response = next.run(request).await;
    let variant = response
        .extensions()
        .get::<Variant>()
        .map_or("", |v| v.name())
        .to_string();
    service.metrics.observe(
        RequestLabels {
            route,
            status: response.status().as_u16(),
            variant,
        },
        started.elapsed().as_secs_f64(),
    );
    response
}

/// Reads a JSON body of at most the configured size into `T`, naming the field at fault.
async fn json_body<T: DeserializeOwned>(service: &Service, body: Body) -> Answer<T> {
    let limit = service.config().limits.max_body_bytes;
    let bytes = axum::body::to_bytes(body, limit).await.map_err(|_| {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            None,
            format!("the body is larger than {limit} bytes"),
        )
    })?;
    let mut reader = serde_json::Deserializer::from_slice(&bytes);
    serde_path_to_error::deserialize(&mut reader).map_err(|e| {
        let message = e.inner().to_string();
        let path = e.path().to_string();
        let field = match message.strip_prefix("unknown field `") {
            Some(rest) => rest.split('`').next().unwrap_or_default().to_string(),
            None if path == "." => "body".to_string(),
            None => path,
        };
        ApiError::bad(&field, message)
    })
}

/// Whether the request carries the configured bearer token (or none is configured).
fn authorised(service: &Service, headers: &HeaderMap) -> Answer<()> {
    let Some(token) = service.config().token.clone() else {
        return Ok(());
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match given {
        Some(given) if given == token => Ok(()),
        _ => Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            Some("authorization"),
            "a bearer token is required",
        )),
    }
}

/// `POST /api/v1/search/text`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TextSearch {
    query: String,
    user_id: Option<String>,
    limit: Option<usize>,
    filters: Option<Map<String, Value>>,
}

/// `POST /api/v1/search/vector`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct VectorSearch {
    vector: Vec<f32>,
    user_id: Option<String>,
    limit: Option<usize>,
    filters: Option<Map<String, Value>>,
}

/// A search's answer: the original app's `SearchResponse`, with the variant and the id events
/// refer to.
#[derive(Debug, Serialize)]
struct SearchAnswer {
    products: Vec<Product>,
    query: Option<String>,
    search_type: &'static str,
    user_id: Option<String>,
    variant: Variant,
    search_id: String,
}

/// What every search checks the same way.
struct Asked {
    user_id: Option<String>,
    limit: usize,
    variant: Variant,
}

fn asked(service: &Service, user_id: Option<String>, limit: Option<usize>) -> Answer<Asked> {
    let config = service.config();
    let limit = limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError::bad(
            "limit",
            format!("limit must be from 1 to {MAX_LIMIT}, got {limit}"),
        ));
    }
    if let Some(id) = &user_id {
        if id.chars().count() > MAX_USER_ID_CHARS || id.is_empty() {
            return Err(ApiError::bad(
                "user_id",
                format!("user_id must have 1 to {MAX_USER_ID_CHARS} characters"),
            ));
        }
    }
    let variant = if config.search.ab_test {
        variant_for(user_id.as_deref(), config.search.enriched_percent)
    } else {
        config.search.rollout
    };
    Ok(Asked {
        user_id,
        limit,
        variant,
    })
}

/// The entry of the index `name` (named by the config).
async fn entry_of(service: &Service, name: &str) -> Answer<IndexEntry> {
    let parts: Vec<String> = name.split('.').map(str::to_string).collect();
    let table = TableName::from_parts(&parts).map_err(ApiError::internal)?;
    let (_, entry) = index_entry(service.session.as_ref(), &table)
        .await
        .map_err(|e| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, None, e.to_string()))?;
    Ok(entry)
}

/// The index text and vector searches of `variant` use, and its entry.
async fn text_index(service: &Service, variant: Variant) -> Answer<(String, IndexEntry)> {
    let index = service.config().search.text_index(variant).to_string();
    let entry = entry_of(service, &index).await?;
    Ok((index, entry))
}

/// The request's filters as a condition on the index's columns: each key a column, each value
/// a string, number or boolean, or a list of them (any of which may match).
fn row_filter(
    entry: &IndexEntry,
    filters: Option<Map<String, Value>>,
) -> Answer<Option<RowFilter>> {
    let Some(filters) = filters else {
        return Ok(None);
    };
    let mut conditions = Vec::new();
    for (column, value) in filters {
        let field = format!("filters.{column}");
        if column == entry.column || !entry.columns.contains(&column) {
            let known: Vec<&str> = entry
                .columns
                .iter()
                .filter(|c| **c != entry.column)
                .map(String::as_str)
                .collect();
            return Err(ApiError::bad(
                &field,
                format!(
                    "unknown filter column '{column}' (known: {})",
                    known.join(", ")
                ),
            ));
        }
        let values = match value {
            Value::Array(values) if values.is_empty() => {
                return Err(ApiError::bad(&field, "an empty list matches nothing"))
            }
            Value::Array(values) => values,
            one => vec![one],
        };
        let values = values
            .into_iter()
            .map(|v| match v {
                Value::String(s) => Ok(ScalarValue::from(s)),
                Value::Bool(b) => Ok(ScalarValue::Boolean(Some(b))),
                Value::Number(n) => Ok(match n.as_i64() {
                    Some(i) => ScalarValue::Int64(Some(i)),
                    None => ScalarValue::Float64(n.as_f64()),
                }),
                other => Err(ApiError::bad(
                    &field,
                    format!("a filter value must be a string, number or boolean, not {other}"),
                )),
            })
            .collect::<Answer<Vec<_>>>()?;
        conditions.push((column, values));
    }
    Ok(RowFilter::each_column_in(conditions))
}

/// Where a search looks: the index (by name and entry) and which of its rows it may return.
struct Target<'a> {
    index: &'a str,
    entry: &'a IndexEntry,
    filter: Option<RowFilter>,
}

/// Searches the target for `vector`, logs the search and answers it.
async fn answer(
    service: &Service,
    target: Target<'_>,
    vector: Vec<f32>,
    asked: Asked,
    query: Option<String>,
    search_type: &'static str,
) -> Answer<Response> {
    let Target {
        index,
        entry,
        filter,
    } = target;
    let found = service
        .session
        .search_vectors(index, &[vector], asked.limit, filter.as_ref())
        .await
        .map_err(|e| match &filter {
            Some(_) => ApiError::bad("filters", e.to_string()),
            None => ApiError::internal(e),
        })?;
    let mut products = Vec::new();
    for mut row in json_rows(&found).map_err(ApiError::internal)? {
        row.remove(&entry.column);
        if let Some(score) = row.remove("score") {
            row.insert("similarity_score".into(), score);
        }
        if let Some(id) = row.get(PRODUCT_ID).and_then(Value::as_i64) {
            row.insert("image_url".into(), Value::from(format!("/images/{id}")));
        }
        products.push(row);
    }
    let search_id = uuid::Uuid::new_v4().to_string();
    let shown = products
        .iter()
        .filter_map(|p| p.get(PRODUCT_ID).and_then(Value::as_i64))
        .collect();
    service
        .events
        .search(Record::Search {
            search_id: search_id.clone(),
            at: Utc::now().timestamp_micros(),
            user_id: asked.user_id.clone(),
            query: query.clone(),
            variant: asked.variant.name().to_string(),
            results_shown: shown,
        })
        .await?;
    let mut response = Json(SearchAnswer {
        products,
        query,
        search_type,
        user_id: asked.user_id,
        variant: asked.variant,
        search_id,
    })
    .into_response();
    response.extensions_mut().insert(asked.variant);
    Ok(response)
}

async fn search_text(State(service): State<Arc<Service>>, body: Body) -> Answer<Response> {
    let request: TextSearch = json_body(&service, body).await?;
    let max = service.config().limits.max_query_chars;
    let query = request.query.trim().to_string();
    if query.is_empty() {
        return Err(ApiError::bad("query", "query is empty"));
    }
    if query.chars().count() > max {
        return Err(ApiError::bad(
            "query",
            format!("query is longer than {max} characters"),
        ));
    }
    let asked = asked(&service, request.user_id, request.limit)?;
    let (index, entry) = text_index(&service, asked.variant).await?;
    let filter = row_filter(&entry, request.filters)?;
    let model = entry.embedding_model.as_deref().ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            None,
            format!("the index {index} has no embedding_model to embed query text"),
        )
    })?;
    let function = vitrine_udfs::models::text_embedding_function(model)
        .map_err(|e| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, None, e.to_string()))?;
    let vector = service
        .embedder
        .text(function, &query)
        .await
        .map_err(ApiError::internal)?;
    let target = Target {
        index: &index,
        entry: &entry,
        filter,
    };
    answer(
        &service,
        target,
        vector.as_ref().clone(),
        asked,
        Some(query),
        "text",
    )
    .await
}

async fn search_vector(State(service): State<Arc<Service>>, body: Body) -> Answer<Response> {
    let request: VectorSearch = json_body(&service, body).await?;
    let asked = asked(&service, request.user_id, request.limit)?;
    let (index, entry) = text_index(&service, asked.variant).await?;
    if request.vector.len() != entry.dimension {
        return Err(ApiError::bad(
            "vector",
            format!(
                "vector has {} values but the index holds {}-d vectors",
                request.vector.len(),
                entry.dimension
            ),
        ));
    }
    let filter = row_filter(&entry, request.filters)?;
    let target = Target {
        index: &index,
        entry: &entry,
        filter,
    };
    answer(&service, target, request.vector, asked, None, "vector").await
}

async fn search_image(
    State(service): State<Arc<Service>>,
    mut form: Multipart,
) -> Answer<Response> {
    let max = service.config().limits.max_upload_bytes;
    let (mut photo, mut user_id, mut limit) = (None, None, None);
    let unreadable = |e: axum::extract::multipart::MultipartError| {
        let status = e.status();
        let message = match status {
            StatusCode::PAYLOAD_TOO_LARGE => format!("the upload is larger than {max} bytes"),
            _ => e.body_text(),
        };
        ApiError::new(status, Some("image"), message)
    };
    while let Some(field) = form.next_field().await.map_err(unreadable)? {
        let name = field.name().unwrap_or_default().to_string();
        match name.as_str() {
            "image" => {
                let bytes = field.bytes().await.map_err(unreadable)?;
                if bytes.len() > max {
                    return Err(ApiError::new(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        Some("image"),
                        format!("the upload is larger than {max} bytes"),
                    ));
                }
                photo = Some(bytes);
            }
            "user_id" => user_id = Some(field.text().await.map_err(unreadable)?),
            "limit" => {
                let text = field.text().await.map_err(unreadable)?;
                limit = Some(text.trim().parse::<usize>().map_err(|_| {
                    ApiError::bad(
                        "limit",
                        format!("limit must be a whole number, got '{text}'"),
                    )
                })?);
            }
            other => {
                return Err(ApiError::bad(
                    other,
                    format!("unknown field '{other}' (known: image, user_id, limit)"),
                ))
            }
        }
    }
    let photo: Bytes = photo.ok_or_else(|| ApiError::bad("image", "no image was uploaded"))?;
    if image::load_from_memory(&photo).is_err() {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Some("image"),
            "the upload is not a JPEG or PNG image",
        ));
    }
    let asked = asked(&service, user_id, limit)?;
    let index = service.config().search.image_index.clone();
    let entry = entry_of(&service, &index).await?;
    let model = entry.embedding_model.as_deref().unwrap_or("clip");
    let function = vitrine_udfs::models::image_embedding_function(model)
        .map_err(|e| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, None, e.to_string()))?;
    let vector = service
        .embedder
        .image(function, photo.to_vec())
        .await
        .map_err(|e| {
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                Some("image"),
                e.to_string(),
            )
        })?;
    let target = Target {
        index: &index,
        entry: &entry,
        filter: None,
    };
    answer(&service, target, vector, asked, None, "image").await
}

fn product_id(text: &str) -> Answer<i64> {
    text.parse()
        .map_err(|_| ApiError::bad("id", format!("'{text}' is not a product id")))
}

async fn product(
    State(service): State<Arc<Service>>,
    Path(id): Path<String>,
) -> Answer<Json<Product>> {
    let id = product_id(&id)?;
    service
        .products()
        .get(id)
        .cloned()
        .map(Json)
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                Some("id"),
                format!("no product {id}"),
            )
        })
}

async fn image(State(service): State<Arc<Service>>, Path(id): Path<String>) -> Answer<Response> {
    let id = product_id(&id)?;
    let products = service.products();
    let missing = || {
        ApiError::new(
            StatusCode::NOT_FOUND,
            Some("id"),
            format!("no photo of product {id}"),
        )
    };
    let path = products.image_path(id).ok_or_else(missing)?;
    let bytes = service
        .engine
        .warehouse()
        .read_volume_file(path)
        .await
        .map_err(|e| ApiError::new(StatusCode::FORBIDDEN, Some("id"), e.to_string()))?
        .ok_or_else(missing)?;
    let kind = match image::guess_format(&bytes) {
        Ok(image::ImageFormat::Png) => "image/png",
        Ok(image::ImageFormat::Jpeg) => "image/jpeg",
        _ => "application/octet-stream",
    };
    Ok((
        [
            (header::CONTENT_TYPE, kind),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        bytes,
    )
        .into_response())
}

/// `POST /api/v1/events`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EventRequest {
    search_id: String,
    #[serde(rename = "type")]
    kind: EventKind,
    product_id: i64,
    at: Option<DateTime<Utc>>,
}

async fn event(
    State(service): State<Arc<Service>>,
    headers: HeaderMap,
    body: Body,
) -> Answer<(StatusCode, Json<Value>)> {
    authorised(&service, &headers)?;
    let request: EventRequest = json_body(&service, body).await?;
    service
        .events
        .event(
            &request.search_id,
            request.kind,
            request.product_id,
            request.at,
        )
        .await?;
    service.metrics.set_pending(service.events.pending());
    Ok((StatusCode::ACCEPTED, Json(json!({ "logged": true }))))
}

async fn health(State(service): State<Arc<Service>>) -> Json<Value> {
    Json(json!({
        "status": "ok",
        "products": service.products().len(),
        "events_pending_commit": service.events.pending(),
    }))
}

async fn metrics(State(service): State<Arc<Service>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        service.metrics.render(),
    )
        .into_response()
}

async fn reload(State(service): State<Arc<Service>>, headers: HeaderMap) -> Answer<Json<Value>> {
    authorised(&service, &headers)?;
    let config = service
        .reload()
        .await
        .map_err(|e| ApiError::bad("config", e.to_string()))?;
    Ok(Json(json!({
        "reloaded": true,
        "ab_test": config.search.ab_test,
        "enriched_percent": config.search.enriched_percent,
        "rollout": config.search.rollout,
    })))
}

async fn page() -> Html<&'static str> {
    Html(PAGE)
}
