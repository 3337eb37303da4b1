use super::*;

#[test]
fn statuses_map_to_outcomes() {
    assert_eq!(
        classify(200, r#"{"accepted":3}"#, None),
        Outcome::Delivered { rejected: vec![] }
    );
    assert_eq!(
        classify(200, r#"{"success":true}"#, None),
        Outcome::Delivered { rejected: vec![] }
    );
    assert_eq!(
        classify(204, "", None),
        Outcome::Delivered { rejected: vec![] }
    );
    assert!(matches!(
        classify(200, "<html>log in to the hotel wifi</html>", None),
        Outcome::Retry { .. }
    ));
    assert_eq!(
        classify(
            200,
            r#"{"accepted":2,"rejected":[{"index":1,"reason":"bad"}]}"#,
            None
        ),
        Outcome::Delivered {
            rejected: vec![Rejection {
                index: 1,
                reason: "bad".into()
            }]
        }
    );
    assert!(matches!(
        classify(400, r#"{"rejected":[{"index":0}]}"#, None),
        Outcome::RejectedEvents { .. }
    ));
    assert!(matches!(
        classify(400, "nope", None),
        Outcome::RejectedBatch { .. }
    ));
    assert_eq!(
        classify(401, "", None),
        Outcome::Unauthorized { status: 401 }
    );
    assert_eq!(
        classify(403, "", None),
        Outcome::Unauthorized { status: 403 }
    );
    assert_eq!(classify(413, "", None), Outcome::TooLarge);
    let reused = ErrorBody::new(ErrorCode::IdempotencyKeyReused, "x");
    let reused = serde_json::to_string(&reused).unwrap();
    assert_eq!(classify(422, &reused, None), Outcome::KeyReused);
    // A 422 from something else is not a reason to re-key: retried.
    assert!(matches!(classify(422, "{}", None), Outcome::Retry { .. }));
    for status in [408, 409, 429, 500, 503, 404, 301, 302, 307] {
        assert!(
            matches!(classify(status, "", None), Outcome::Retry { .. }),
            "{status}"
        );
    }
}

#[test]
fn codes_round_trip_and_carry_their_status() {
    for code in ErrorCode::ALL {
        let body = serde_json::to_string(&ErrorBody::new(code, "e")).unwrap();
        assert!(body.contains(&format!("\"{}\"", code.as_str())), "{body}");
        let back: ErrorBody = serde_json::from_str(&body).unwrap();
        assert_eq!(back.code, code);
        assert!((400..600).contains(&code.status()));
    }
    assert_eq!(ErrorCode::Overloaded.retry_after_secs(), Some(1));
    assert_eq!(ErrorCode::LogUnavailable.retry_after_secs(), Some(5));
    assert_eq!(ErrorCode::BatchTooLarge.retry_after_secs(), None);
}

/// docs/PROTOCOL.md's table of codes lists exactly this crate's codes, each
/// under the status it is sent with.
#[test]
fn the_protocol_doc_lists_every_code_with_its_status() {
    let doc = include_str!("../../docs/PROTOCOL.md");
    let mut listed = Vec::new();
    for line in doc.lines() {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        let Some(status) = cells.get(1).and_then(|s| s.parse::<u16>().ok()) else {
            continue;
        };
        let Some(codes) = cells.get(2) else { continue };
        for word in codes.split('`').skip(1).step_by(2) {
            if word.chars().all(|c| c.is_ascii_lowercase() || c == '_') {
                listed.push((word.to_string(), status));
            }
        }
    }
    let mut expected: Vec<(String, u16)> = ErrorCode::ALL
        .iter()
        .map(|c| (c.as_str().to_string(), c.status()))
        .collect();
    listed.sort();
    expected.sort();
    assert_eq!(
        listed, expected,
        "docs/PROTOCOL.md's table of codes and ErrorCode differ"
    );
}
