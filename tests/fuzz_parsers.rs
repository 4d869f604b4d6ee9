//! Property tests over the pure parsers that read outside input: arbitrary
//! (and adversarially structured) input never panics, and what is accepted
//! is usable. Case counts are kept modest so the file runs in seconds.

use proptest::prelude::*;
use serde_json::{json, Value};
use std::time::Duration;
use w2c::llm::openai::{
    parse_chat_body, parse_completion_body, parse_usage, retry_after_from, MAX_RETRY_AFTER,
};

/// Arbitrary JSON, biased towards the numbers servers get wrong.
fn json_value() -> impl Strategy<Value = Value> {
    let number = prop_oneof![
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| json!(f)),
        Just(json!(u64::MAX)),
        Just(json!(-1)),
        Just(json!(1e300)),
        Just(json!(0.5)),
    ];
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        number,
        ".{0,12}".prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(
                prop_oneof![
                    Just("choices".to_string()),
                    Just("message".to_string()),
                    Just("content".to_string()),
                    Just("usage".to_string()),
                    Just("prompt_tokens".to_string()),
                    Just("completion_tokens".to_string()),
                    Just("logprobs".to_string()),
                    Just("tokens".to_string()),
                    Just("token_logprobs".to_string()),
                    Just("text_offset".to_string()),
                    Just("text".to_string()),
                    Just("tool_calls".to_string()),
                    Just("runs".to_string()),
                    Just("next_page_token".to_string()),
                    "[a-z_]{1,8}",
                ],
                inner,
                0..6,
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A chat or completion reply whose parts may have any type.
fn reply_shaped() -> impl Strategy<Value = Value> {
    (json_value(), json_value(), json_value(), json_value()).prop_map(
        |(content, usage, lp, text)| {
            json!({
                "choices": [{
                    "message": {"content": content, "tool_calls": lp.clone()},
                    "text": text,
                    "logprobs": lp,
                    "finish_reason": usage.clone(),
                }],
                "usage": usage,
            })
        },
    )
}

/// A `/completions` reply whose logprob arrays are consistent (offsets are
/// the running token lengths, the text their concatenation) except for one
/// corrupted number: a huge offset, or a huge `completion_tokens`.
fn completion_shaped() -> impl Strategy<Value = Value> {
    (
        prop::collection::vec("[a-c ]{1,3}", 1..6),
        any::<prop::sample::Index>(),
        prop_oneof![Just(u64::MAX), Just(u64::MAX / 2), 0u64..100],
        prop_oneof![3 => 0u64..3, 1 => any::<u64>()],
    )
        .prop_map(|(tokens, at, bad_offset, completion_tokens)| {
            let mut offsets = Vec::new();
            let mut text = String::new();
            for t in &tokens {
                offsets.push(text.chars().count() as u64);
                text.push_str(t);
            }
            let i = at.index(offsets.len());
            offsets[i] = bad_offset;
            let lps: Vec<Option<f64>> =
                (0..tokens.len()).map(|i| (i > 0).then_some(-0.5)).collect();
            json!({
                "choices": [{"text": text, "logprobs": {
                    "tokens": tokens, "token_logprobs": lps, "text_offset": offsets,
                }}],
                "usage": {"prompt_tokens": 1, "completion_tokens": completion_tokens},
            })
        })
}

/// A float as TOML spells it.
fn toml_float(f: f64) -> String {
    if f.is_nan() {
        "nan".into()
    } else if f.is_infinite() {
        if f > 0.0 { "inf" } else { "-inf" }.into()
    } else {
        format!("{f:?}")
    }
}

fn hostile_float() -> impl Strategy<Value = f64> {
    prop_oneof![
        any::<f64>(),
        Just(f64::INFINITY),
        Just(f64::NAN),
        Just(1e300),
        Just(-1.0),
        Just(0.0),
        0.0f64..100.0,
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn reply_parsers_never_panic(
        text in ".{0,64}",
        v in json_value(),
        shaped in reply_shaped(),
        completion in completion_shaped(),
    ) {
        for body in [text.clone(), v.to_string(), shaped.to_string(), completion.to_string()] {
            let _ = parse_chat_body(&body);
            if let Ok(r) = parse_completion_body(&body) {
                // What the parser accepts, the scorer can take.
                let prompt = r.text.clone();
                for ctx in 0..=prompt.chars().count().min(16) {
                    let _ = w2c::methods::logprob::score(
                        &prompt,
                        ctx,
                        r.logprobs.as_ref(),
                        usize::try_from(r.usage.completion_tokens).unwrap_or(usize::MAX),
                    );
                }
            }
        }
        let _ = parse_usage(&v);
        let _ = parse_usage(&shaped);
        let _ = w2c::tracking::rest::search_page(&v);
    }

    #[test]
    fn retry_after_is_bounded(ms in ".{0,24}", secs in ".{0,24}", f in hostile_float()) {
        let now = chrono::Utc::now();
        for (a, b) in [
            (Some(ms.as_str()), Some(secs.as_str())),
            (Some(toml_float(f).as_str()), None),
            (None, Some(toml_float(f).as_str())),
            (Some(format!("{f}").as_str()), Some(format!("{f}").as_str())),
        ] {
            if let Some(d) = retry_after_from(a, b, now) {
                prop_assert!(d <= MAX_RETRY_AFTER);
            }
        }
        let _ = w2c::secs::clamped(f, Duration::from_secs(60));
        let _ = w2c::secs::in_range("k", f, 0.0..=1e9);
    }

    #[test]
    fn dataset_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..256), v in json_value()) {
        let _ = w2c::dataset::parse_bytes(&bytes);
        let mut line = v.to_string().into_bytes();
        line.push(b'\n');
        line.extend_from_slice(&bytes);
        let _ = w2c::dataset::parse_bytes(&line);
        let row = json!({
            "uuid": v, "question": "q", "correct_answer": "direct",
            "answers": {"direct": "a", "tool_call": "b", "request_for_info": "c", "cannot_answer": "d"},
            "tools": v,
        });
        let _ = w2c::dataset::parse_bytes(row.to_string().as_bytes());
    }

    #[test]
    fn run_keys_are_folder_names_or_errors(a in ".{0,12}", b in ".{0,12}") {
        if let Ok(k) = w2c::config::resolve_run_key(Some(&a), Some(&b), None) {
            prop_assert!(!k.key.is_empty());
            prop_assert!(k.key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-'));
            prop_assert!(k.key.chars().any(|c| c.is_ascii_alphanumeric()));
        }
        let _ = w2c::redact::redact_with(&a, std::slice::from_ref(&b));
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn configs_that_load_give_a_client(
        // Mostly valid values, so that the hostile one is what gets tested.
        timeout in prop_oneof![1 => 0.001f64..1e5, 1 => hostile_float()],
        fail_rate in prop_oneof![9 => Just(0.0), 1 => hostile_float()],
        concurrency in prop_oneof![9 => 1i64..=4096, 1 => any::<i64>()],
        attempts in prop_oneof![9 => 1i64..=100, 1 => any::<i64>()],
        rpm in prop_oneof![9 => 1i64..100_000, 1 => any::<i64>()],
        bytes in prop_oneof![9 => 1024i64..=(1i64 << 30), 1 => any::<i64>()],
        url in prop_oneof![
            3 => Just("http://127.0.0.1:9/v1".to_string()),
            1 => Just("https://api.example.com".to_string()),
            1 => ".{0,20}",
            1 => "[a-z]{1,5}://[a-z:@/?#.]{0,16}",
        ],
        kind in prop_oneof![Just("mock"), Just("openai")],
        junk in ".{0,40}",
    ) {
        let text = format!(
            r#"[dataset]
path = "d.jsonl"
[models]
target = "m"
target_provider = "p"
[providers.p]
kind = "{kind}"
base_url = {url:?}
timeout_secs = {timeout}
fail_rate = {fail_rate}
max_concurrency = {concurrency}
max_attempts = {attempts}
requests_per_minute = {rpm}
max_response_bytes = {bytes}
[methods]
enabled = ["mcq"]
"#,
            timeout = toml_float(timeout),
            fail_rate = toml_float(fail_rate),
        );
        for t in [text.clone(), text.replace("kind = \"mock\"\nbase_url", "kind = \"mock\"\n#"), format!("{text}\n{junk}"), junk.clone()] {
            if let Ok(cfg) = w2c::config::parse(&t) {
                for (name, p) in &cfg.providers {
                    // Whatever validation lets through builds a client without panicking.
                    let _ = w2c::llm::Client::new(name, p, 42);
                }
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn checkpoint_files_with_any_bytes_load_or_fail_cleanly(
        prefix in prop::collection::vec(json_value(), 0..4),
        tail in prop::collection::vec(any::<u8>(), 0..64),
    ) {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("results.jsonl");
        let mut bytes: Vec<u8> = prefix.iter().flat_map(|v| format!("{v}\n").into_bytes()).collect();
        bytes.extend_from_slice(&tail);
        std::fs::write(&p, &bytes).expect("write");
        let _ = w2c::store::load_jsonl::<Value>(&p);
        let _ = w2c::store::load_jsonl::<w2c::methods::mcq::McqRecord>(&p);
        // Opening for append cuts a torn tail; what is left then loads, and
        // an appended record is read back last.
        if let Ok((mut w, _)) = w2c::store::JsonlWriter::open(&p) {
            w.append(&json!({"k": 1})).expect("append");
            drop(w);
            if let Ok((records, report)) = w2c::store::load_jsonl::<Value>(&p) {
                prop_assert_eq!(report.torn_tail_bytes, 0);
                prop_assert_eq!(records.last(), Some(&json!({"k": 1})));
            }
        }
    }
}

/// An environment value: unset, arbitrary text (newlines and control
/// characters included), or one of the values settings get wrong.
fn env_value() -> impl Strategy<Value = Option<String>> {
    prop_oneof![
        3 => Just(None),
        2 => "(?s).{0,24}".prop_map(Some),
        1 => prop::sample::select(vec![
            "http://127.0.0.1:9",
            "https://user:pw@h.example/x",
            "file:///tmp/mlruns",
            "sqlite:///db",
            "true", "false", "0", "1", "yes", "off",
            "inf", "nan", "1e300", "-1", "4294967295", "18446744073709551616",
            "tok-0123456789\n", "a\r\nb", " ", "",
        ])
        .prop_map(|s| Some(s.to_string())),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn tracking_settings_from_any_environment_resolve_or_fail_cleanly(
        values in prop::collection::vec(env_value(), w2c::env_vars::READ_AS_TEXT.len()),
        uri in prop::option::of("(?s).{0,24}"),
    ) {
        let env: std::collections::HashMap<&str, String> = w2c::env_vars::READ_AS_TEXT
            .iter()
            .zip(values)
            .filter_map(|(k, v)| v.map(|v| (*k, v)))
            .collect();
        let lookup = |k: &str| env.get(k).cloned();
        let config = w2c::config::TrackingConfig {
            uri,
            experiment: None,
            ..Default::default()
        };
        if let Ok(Some(target)) = w2c::tracking::resolve(&config, false, &lookup) {
            // What resolves is an http(s) server without credentials in the
            // URL, with a token that fits a header, and builds a client.
            prop_assert!(matches!(target.uri.scheme(), "http" | "https"));
            prop_assert!(target.uri.username().is_empty() && target.uri.password().is_none());
            if let w2c::tracking::rest::Auth::Bearer(token) = &target.auth {
                let header = format!("Bearer {}", token);
                prop_assert!(reqwest::header::HeaderValue::from_str(&header).is_ok());
            }
            if target.ca_cert.is_none() {
                prop_assert!(target.client().is_ok());
            }
        }
        let _ = w2c::tracking::offline_reason(false, &lookup);
    }

    #[test]
    fn secrets_fit_a_header_or_are_refused_without_being_shown(
        value in prop_oneof!["(?s).{0,24}", "[ -~]{6,24}", "[ -~]{6,12}[\n\r\t\u{0}\u{7f}][ -~]{0,6}"],
    ) {
        match w2c::env_vars::check_header_value("MY_KEY", "`providers.p.api_key_env`", "Bearer ", &value) {
            Ok(()) => {
                let header = format!("Bearer {}", value);
                prop_assert!(reqwest::header::HeaderValue::from_str(&header).is_ok());
            }
            Err(e) => {
                let msg = e.to_string();
                prop_assert!(msg.contains("`MY_KEY`"), "{}", msg);
                if value.trim().len() >= 6 {
                    prop_assert!(!msg.contains(value.trim()), "{}", msg);
                }
            }
        }
    }

    #[test]
    fn command_lines_parse_or_fail_cleanly(args in command_line()) {
        use clap::Parser as _;
        let argv = std::iter::once("w2c".to_string()).chain(args);
        // A usage error, help or version is an error value, never a panic.
        let _ = w2c::cli::Cli::try_parse_from(argv);
    }
}

/// Arguments for `w2c`: a subcommand (or not), then flags and values of
/// every command in any order, and arbitrary words.
fn command_line() -> impl Strategy<Value = Vec<String>> {
    let sub = prop::sample::select(vec![
        "run",
        "resume",
        "sync",
        "status",
        "verify",
        "report",
        "ls",
        "show",
        "completions",
        "config",
        "mock-server",
        "debug",
        "help",
        "",
        "--help",
        "-V",
    ]);
    let token = prop_oneof![
        3 => prop::sample::select(vec![
            "--config", "-c", "c.toml", "--run-key", "--runs-dir", "runs", "--no-tracking",
            "--all", "--json", "--deep", "--local-only", "--format", "html", "md", "text",
            "json", "xml", "--out", "r.html", "--experiment", "check", "bash", "zsh",
            "render-official", "--variant", "--dataset", "--port", "65536", "--latency-ms",
            "18446744073709551616", "--rate-429", "-0.5", "--echo-key", "--echo-key-as",
            "all", "--bad-http", "not-http", "--absurd-echo", "0000", "3f2a9c1d", "--",
            "-", "--help", "=",
        ])
        .prop_map(str::to_string),
        1 => "(?s).{0,12}",
    ];
    (sub, prop::collection::vec(token, 0..8)).prop_map(|(sub, rest)| {
        std::iter::once(sub.to_string())
            .filter(|s| !s.is_empty())
            .chain(rest)
            .collect()
    })
}
