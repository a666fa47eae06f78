//! Benchmark: signing one typical `StopDtsJob` attempt, with each signature.
//!
//! Target: at most 5 µs median for the signature itself. V1: build the
//! parameter map with the common parameters, canonicalize, string-to-sign,
//! HMAC-SHA1, base64. V3: canonical query and headers, hash the body and the
//! canonical request (SHA-256), HMAC-SHA256, hex, `Authorization`. Also
//! measured: the whole wire request as the client builds it (`build_signed`,
//! `build_signed_v3`: signature, URL, body and, for V3, headers), the figure
//! that matters per attempt.
//!
//! A plain timing loop: `SAMPLES` samples of `ITERS` iterations each; prints
//! the median, 10th and 90th percentile time per iteration.
//!
//! Run: `cargo bench --bench sign`.

use std::collections::BTreeMap;
use std::hint::black_box;
use std::time::Instant;

use runbook::cloud::actions;
use runbook::cloud::client::{build_signed, build_signed_v3};
use runbook::cloud::credentials::Credentials;
use runbook::cloud::signer::{self, CommonParams, v3};
use runbook::cloud::{ActionRequest, Endpoints};

const SAMPLES: usize = 201;
const ITERS: u32 = 2_000;

/// Nanoseconds per iteration of `f`: (p10, median, p90).
fn measure(mut f: impl FnMut()) -> (f64, f64, f64) {
    // Warm up caches and the allocator.
    for _ in 0..ITERS {
        f();
    }
    let mut per_iter: Vec<f64> = (0..SAMPLES)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..ITERS {
                f();
            }
            start.elapsed().as_secs_f64() * 1e9 / f64::from(ITERS)
        })
        .collect();
    per_iter.sort_by(f64::total_cmp);
    let at = |q: f64| per_iter[((per_iter.len() - 1) as f64 * q).round() as usize];
    (at(0.1), at(0.5), at(0.9))
}

fn report(name: &str, (p10, median, p90): (f64, f64, f64)) {
    println!(
        "{name:<44} median {:>7.2} µs   (p10 {:.2} µs, p90 {:.2} µs)",
        median / 1e3,
        p10 / 1e3,
        p90 / 1e3
    );
}

fn main() {
    let spec = actions::lookup("dts.StopDtsJob").expect("dts.StopDtsJob is in the catalogue");
    let params: BTreeMap<String, String> = [
        ("DtsJobId", "l3m1213ye7l****"),
        ("DtsInstanceId", "dtsl3m1213ye7l****"),
        ("SynchronizationDirection", "Forward"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    let req = ActionRequest::typed(spec, "cn-hangzhou", params);
    let credentials = Credentials::new("LTAI5tBenchKeyId0001", "bench-secret", None);
    let nonce = "c5b3f1e0-0d7b-4a6e-9f3a-000000000004";
    let timestamp: jiff::Timestamp = "2024-05-01T08:00:00Z".parse().expect("a valid timestamp");
    let base = Endpoints::new()
        .resolve(&req.product, &req.region)
        .expect("a valid product and region");

    let signature = measure(|| {
        let mut all = black_box(&req.query).clone();
        CommonParams {
            action: &req.action,
            version: &req.version,
            access_key_id: credentials.access_key_id(),
            security_token: None,
            nonce,
            timestamp,
        }
        .apply(&mut all);
        black_box(signer::sign(
            "POST",
            &all,
            credentials.access_key_secret().expose(),
        ));
    });
    report("sign StopDtsJob (params -> signature)", signature);

    let wire = measure(|| {
        black_box(build_signed(
            black_box(&req),
            &base,
            &credentials,
            nonce,
            timestamp,
        ));
    });
    report("build_signed StopDtsJob (signed URL + body)", wire);

    let date = signer::format_timestamp(timestamp);
    let host = "dts.cn-hangzhou.aliyuncs.com";
    let signature_v3 = measure(|| {
        let body: &[u8] = b"";
        let payload = v3::hashed_payload(body);
        let headers = [
            ("accept", "application/json"),
            ("host", host),
            (v3::ACTION, req.action.as_str()),
            (v3::CONTENT_SHA256, payload.as_str()),
            (v3::DATE, date.as_str()),
            (v3::NONCE, nonce),
            (v3::VERSION, req.version.as_str()),
        ];
        let signed = v3::sign(
            &v3::Request {
                method: "POST",
                path: "/",
                query: black_box(&req.query),
                headers: &headers,
                body,
            },
            credentials.access_key_secret().expose(),
        );
        black_box(v3::authorization(
            credentials.access_key_id(),
            &signed.signed_headers,
            &signed.signature,
        ));
    });
    report(
        "sign StopDtsJob V3 (headers -> Authorization)",
        signature_v3,
    );

    let wire_v3 = measure(|| {
        black_box(build_signed_v3(
            black_box(&req),
            &base,
            &credentials,
            nonce,
            timestamp,
        ));
    });
    report("build_signed_v3 StopDtsJob (URL + headers)", wire_v3);

    let target_ns = 5_000.0;
    for (name, m) in [("V1", signature), ("V3", signature_v3)] {
        println!(
            "target: median <= 5 µs for the {name} signature: {}",
            if m.1 <= target_ns { "met" } else { "MISSED" }
        );
    }
}
