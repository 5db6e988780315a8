//! `GET /openapi.json`: the document the handlers make is the one checked in, and every
//! path it describes is a route of the server (the fuzz run, scripts/fuzz-http, checks the
//! answers against it).

use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::*;

const CHECKED_IN: &str = include_str!("../../docs/openapi.json");

#[tokio::test]
async fn the_served_document_is_the_checked_in_one() {
    let app = spawn_app().await;
    let response = app.http.get(app.url("/openapi.json")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "application/json");
    let served: Value = response.json().await.unwrap();
    let checked_in: Value = serde_json::from_str(CHECKED_IN).unwrap();
    assert_eq!(served, checked_in, "docs/openapi.json is stale");
    assert_eq!(served["openapi"], "3.1.0");
}

#[tokio::test]
async fn every_documented_operation_is_served() {
    let app = spawn_app_with(|c| c.cpu_ready_threshold = 1.0).await;
    let document: Value = serde_json::from_str(CHECKED_IN).unwrap();
    let mut operations = 0;
    for (path, methods) in document["paths"].as_object().unwrap() {
        let concrete = path
            .replace("{stream_id}", "s1")
            .replace("{comment_id}", "1-0")
            .replace("{held_id}", "1-0")
            .replace("{user_id}", "u1");
        for method in methods.as_object().unwrap().keys() {
            operations += 1;
            let method = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let response = app
                .http
                .request(method.clone(), app.url(&concrete))
                .send()
                .await
                .unwrap();
            let status = response.status();
            let body = response.text().await.unwrap();
            // Not the router's fallbacks: a route with this method exists.
            assert!(
                !body.contains("no such endpoint") && status != StatusCode::METHOD_NOT_ALLOWED,
                "{method} {concrete}: {status} {body}"
            );
        }
    }
    assert_eq!(operations, 20, "the document's operations");
}
