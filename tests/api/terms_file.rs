//! `DANMAKU_BLOCKED_TERMS_FILE`: lines `action<TAB>term` that apply to every stream, beside
//! each stream's own list, matched like it (NFKC, case folding, invisible code points gone);
//! a file that cannot be read as terms stops start-up, naming the variable and the line.

use serde_json::json;

use crate::helpers::*;
use crate::toolbox::{put_terms, say, with_token};

/// A file of terms in the temporary directory, removed when dropped.
struct TermsFile(std::path::PathBuf);

impl TermsFile {
    fn new(text: &str) -> Self {
        let name = format!("danmaku-terms-{}.tsv", rand::random::<u64>());
        let path = std::env::temp_dir().join(name);
        std::fs::write(&path, text).unwrap();
        Self(path)
    }
}

impl Drop for TermsFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[tokio::test]
async fn the_files_terms_apply_to_every_stream() {
    let file = TermsFile::new("# house rules\nrefuse\tslur\r\nhold\twww.\nshadow\tfree coins\n");
    let path = file.0.clone();
    let app = spawn_app_with(move |c| c.blocked_terms_file = Some(path)).await;

    for s in ["tf-one", "tf-two"] {
        let (mut user, _) = app.user(s, "user").await;
        let refused = say(&mut user, "a ＳＬＵＲ here").await;
        assert_eq!(refused["code"], "blocked", "{s}: {refused}");
        let held = say(&mut user, "see WWW.example").await;
        assert_eq!(held["held"], true, "{s}: {held}");
        let (mut viewer, _) = app.viewer(s).await;
        let shadowed = say(&mut user, "Free\u{200b} Coins!").await;
        assert_eq!(
            (shadowed["type"].as_str(), &shadowed["held"]),
            (Some("ack"), &json!(null))
        );
        let marker = app.post_system(s, "marker").await;
        assert_eq!(viewer.comments(1).await, [marker], "{s}: shadowed");
        assert_eq!(say(&mut user, "all fine").await["type"], "ack");

        let moderator = app.token("streamer", &[s]);
        let (mut streamer, _) = with_token(&app, s, &moderator).await;
        assert_eq!(
            say(&mut streamer, "no slur rule for me").await["type"],
            "ack"
        );
    }

    // A stream's own list adds to the file's, and replacing it leaves the file's in force.
    let s = "tf-one";
    let moderator = app.token("streamer", &[s]);
    let own = json!([{"term": "cheese", "action": "refuse"}]);
    assert_eq!(put_terms(&app, s, &moderator, own).await.0, 200);
    let (mut user, _) = app.user(s, "user2").await;
    for text in ["cheese", "slur"] {
        assert_eq!(say(&mut user, text).await["code"], "blocked", "{text}");
    }
    assert_eq!(put_terms(&app, s, &moderator, json!([])).await.0, 200);
    assert_eq!(say(&mut user, "cheese").await["type"], "ack");
    assert_eq!(say(&mut user, "slur").await["code"], "blocked");
}

#[tokio::test]
async fn a_bad_terms_file_stops_start_up() {
    let missing = std::env::temp_dir().join("danmaku-no-such-terms-file");
    let bad = [
        TermsFile::new("refuse\tok\nrefuse slur\n"),
        TermsFile::new("ban\tslur\n"),
        TermsFile::new(&format!("hold\t{}\n", "x".repeat(65))),
    ];
    let cases = [
        (missing, "cannot read"),
        (bad[0].0.clone(), "line 2: expected action<TAB>term"),
        (
            bad[1].0.clone(),
            "line 1: the action is refuse, hold or shadow",
        ),
        (bad[2].0.clone(), "line 1:"),
    ];
    for (path, expected) in cases {
        let mut config = danmaku::Config::defaults();
        config.listen = "127.0.0.1:0".parse().unwrap();
        config.blocked_terms_file = Some(path);
        let error = danmaku::App::build(config).await.err().expect("refused");
        let error = error.to_string();
        assert!(error.starts_with("DANMAKU_BLOCKED_TERMS_FILE"), "{error}");
        assert!(error.contains(expected), "{expected:?} in {error}");
    }
}

/// A refusal for a blocked term spends a token of the rate limit as a post does: the list
/// cannot be probed faster than one may post.
#[tokio::test]
async fn refusals_spend_the_rate_limit() {
    let file = TermsFile::new("refuse\tslur\n");
    let path = file.0.clone();
    let app = spawn_app_with(move |c| {
        c.blocked_terms_file = Some(path);
        c.rate_per_sec = 0.1;
        c.rate_burst = 3.0;
    })
    .await;
    let (mut user, _) = app.user("tf-probe", "prober").await;
    let mut codes = Vec::new();
    for _ in 0..4 {
        codes.push(
            say(&mut user, "slur?").await["code"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    assert_eq!(codes, ["blocked", "blocked", "blocked", "rate_limited"]);
}
