//! `/completions` with echo + logprobs: the HTTP client against
//! `w2c mock-server` returns exactly what the built-in mock computes.

mod common;

use common::MockServer;
use w2c::config::{ProviderConfig, ProviderKind};
use w2c::llm::{Client, CompletionRequest};

fn provider(kind: ProviderKind, base_url: Option<String>) -> ProviderConfig {
    let toml = match kind {
        ProviderKind::Mock => "kind = \"mock\"".to_string(),
        ProviderKind::Openai => format!("kind = \"openai\"\nbase_url = \"{}\"", base_url.unwrap()),
    };
    toml::from_str(&toml).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echo_logprobs_over_http_match_the_builtin_mock() {
    let server = MockServer::start(&["--seed", "5", "--rate-malformed", "0.3"], &[]);
    let http = Client::new(
        "srv",
        &provider(ProviderKind::Openai, Some(format!("{}/v1", server.url))),
        5,
    )
    .unwrap();
    let local = Client::new("mock", &provider(ProviderKind::Mock, None), 5).unwrap();
    for prompt in [
        "Question: is it raining?\nAnswer:",
        "Ünïcode ✓ text\n\n",
        "x",
    ] {
        let req = CompletionRequest {
            model: "m".into(),
            prompt: prompt.into(),
            max_tokens: 1,
            echo: true,
            logprobs: Some(1),
            temperature: 0.0,
            seed: 5,
        };
        let a = http.complete(&req).await;
        let b = local.complete(&req).await;
        let (a, b) = (a.result.expect("http"), b.result.expect("mock"));
        assert_eq!(a.text, b.text);
        assert_eq!(a.logprobs, b.logprobs);
        let lp = a.logprobs.unwrap();
        assert_eq!(lp.tokens.len(), lp.text_offset.len());
        assert_eq!(lp.token_logprobs[0], None);
        assert_eq!(a.usage.completion_tokens, 1);
        // Offsets are character offsets into the echoed text.
        let chars: Vec<char> = a.text.chars().collect();
        for (tok, off) in lp.tokens.iter().zip(&lp.text_offset) {
            let s: String = chars[*off..*off + tok.chars().count()].iter().collect();
            assert_eq!(&s, tok);
        }
    }
}
