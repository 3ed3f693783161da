//! Property tests of what faces untrusted input: the webhook signature check and the payload parser.
//! Neither may panic on any input, and a signature must bind to the exact bytes.

use codex_k8s::config::Secret;
use codex_k8s::gateway::{SignatureError, sign, verify};
use proptest::prelude::*;
use serde_json::{Value, json};

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        ".{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 64, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::hash_map(
                prop_oneof![
                    Just("action".to_owned()),
                    Just("label".to_owned()),
                    Just("labels".to_owned()),
                    Just("name".to_owned()),
                    Just("number".to_owned()),
                    Just("issue".to_owned()),
                    Just("pull_request".to_owned()),
                    Just("repository".to_owned()),
                    Just("id".to_owned()),
                    Just("sender".to_owned()),
                    Just("login".to_owned()),
                    Just("type".to_owned()),
                    Just("review".to_owned()),
                    Just("state".to_owned()),
                    "[a-z_]{1,8}",
                ],
                inner,
                0..6,
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn hex_digits(s: &str) -> bool {
    s.bytes().all(|b| b.is_ascii_hexdigit())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn a_signature_verifies_exactly_its_own_bytes(secret in "[ -~]{1,40}", body in prop::collection::vec(any::<u8>(), 0..512), flip in any::<prop::sample::Index>()) {
        let secrets = vec![Secret::new(secret.clone())];
        let header = sign(&secret, &body);
        prop_assert_eq!(verify(&secrets, &header, &body), Ok(()));
        if !body.is_empty() {
            let mut tampered = body.clone();
            let i = flip.index(tampered.len());
            tampered[i] ^= 0x01;
            prop_assert_eq!(verify(&secrets, &header, &tampered), Err(SignatureError::Mismatch));
        }
    }

    #[test]
    fn any_signature_header_is_answered_without_panicking(header in ".{0,80}", body in prop::collection::vec(any::<u8>(), 0..64)) {
        // A random header never carries the right MAC: it must be refused (as malformed or as a
        // mismatch), never accepted and never a panic.
        let result = verify(&[Secret::new("s".to_owned())], &header, &body);
        prop_assert!(result.is_err(), "accepted {:?}", header);
        let expected = if header.strip_prefix("sha256=").is_some_and(|h| h.len() == 64 && hex_digits(h)) {
            SignatureError::Mismatch
        } else {
            SignatureError::Malformed
        };
        prop_assert_eq!(result, Err(expected));
    }

    #[test]
    fn the_payload_parser_never_panics(event in prop_oneof![Just("issues"), Just("pull_request"), Just("pull_request_review"), Just("issue_comment"), Just("installation")], payload in json_value()) {
        let _ = codex_k8s::control::parse_event(event, &payload.to_string());
    }

    #[test]
    fn labeled_issues_parse_to_their_label(number in 1u64..1_000_000, label in "[a-z:\\-]{1,20}", others in prop::collection::vec("[a-z]{1,8}", 0..4)) {
        let payload = json!({
            "action": "labeled",
            "label": { "name": label },
            "issue": { "number": number, "labels": others.iter().map(|o| json!({ "name": o })).collect::<Vec<_>>() },
            "repository": { "id": 7 },
            "sender": { "login": "someone", "type": "User" },
        });
        let parsed = codex_k8s::control::parse_event("issues", &payload.to_string()).unwrap();
        match parsed.policy_event {
            Some(codex_k8s::domain::policy::PolicyEvent::Labeled { target, label: got, labels, .. }) => {
                prop_assert_eq!(target, codex_k8s::domain::policy::Target::Issue(number));
                prop_assert!(labels.contains(&got));
                prop_assert_eq!(got, label);
            }
            other => prop_assert!(false, "parsed as {:?}", other),
        }
    }
}
