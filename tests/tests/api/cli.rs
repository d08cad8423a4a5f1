//! The command line a newcomer meets: `docfan token` finds the server's secret and
//! address in the same data directory `serve` uses, refuses to invent a secret the
//! server does not know, and `--help` lists the environment.

use std::path::Path;
use std::process::Output;

use reqwest::StatusCode;
use tests::child::{ChildServer, docfan_binary};

/// `docfan <args>` with none of docfan's variables from the test's environment.
async fn docfan(args: &[&str], cwd: &Path) -> Output {
    let mut command = tokio::process::Command::new(docfan_binary());
    command.args(args).current_dir(cwd);
    for name in [
        "DOCFAN_JWT_SECRET",
        "DOCFAN_DATA_DIR",
        "DOCFAN_LISTEN",
        "DOCFAN_URL",
        "DOCFAN_BACKEND",
    ] {
        command.env_remove(name);
    }
    command.output().await.expect("docfan runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[tokio::test]
async fn token_refuses_to_invent_a_secret_and_creates_one_when_told() {
    let cwd = tempfile::tempdir().unwrap();
    let refused = docfan(&["token", "alice"], cwd.path()).await;
    assert!(!refused.status.success());
    let said = text(&refused.stderr);
    let looked = cwd.path().join("docfan-data").join("jwt-secret");
    assert!(
        said.contains(&looked.display().to_string()),
        "names where it looked: {said}"
    );
    for hint in ["--data-dir", "DOCFAN_JWT_SECRET", "--create-secret"] {
        assert!(said.contains(hint), "says how to fix it ({hint}): {said}");
    }
    assert!(text(&refused.stdout).is_empty(), "no token printed");
    assert!(!looked.exists(), "nothing created");

    let created = docfan(&["token", "alice", "--create-secret"], cwd.path()).await;
    assert!(created.status.success(), "{}", text(&created.stderr));
    assert!(looked.exists());
    let token = text(&created.stdout);
    assert_eq!(token.trim().split('.').count(), 3, "a JWT: {token}");
    assert!(
        text(&created.stderr).contains("http://127.0.0.1:8080/#token="),
        "the default address without a server: {}",
        text(&created.stderr)
    );

    // The secret now exists: no flag needed, and `--url` sets the link.
    let again = docfan(
        &["token", "bob", "--url", "https://docs.example/"],
        cwd.path(),
    )
    .await;
    assert!(again.status.success(), "{}", text(&again.stderr));
    assert!(
        text(&again.stderr).contains("https://docs.example/#token="),
        "{}",
        text(&again.stderr)
    );
}

#[tokio::test]
async fn token_links_to_the_address_serve_recorded_and_its_token_is_accepted() {
    let data = tempfile::tempdir().unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    // The server creates its own secret in the data directory (an empty variable is
    // no secret).
    let server = ChildServer::start_with_env(data.path(), &[("DOCFAN_JWT_SECRET", "")]).await;
    let data_dir = data.path().display().to_string();
    let minted = docfan(
        &["token", "carol", "--data-dir", &data_dir],
        elsewhere.path(),
    )
    .await;
    assert!(minted.status.success(), "{}", text(&minted.stderr));
    let link = text(&minted.stderr);
    assert!(
        link.contains(&format!("{}/#token=", server.base)),
        "the link points at the running server ({}): {link}",
        server.base
    );
    let token = text(&minted.stdout).trim().to_owned();
    let listed = reqwest::Client::new()
        .get(format!("{}/documents", server.base))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(
        listed.status(),
        StatusCode::OK,
        "the server accepts the token"
    );
    server.terminate().await;
}

#[tokio::test]
async fn help_lists_the_environment_and_groups_the_options() {
    let cwd = tempfile::tempdir().unwrap();
    let help = text(&docfan(&["--help"], cwd.path()).await.stdout);
    for variable in [
        "DOCFAN_JWT_SECRET",
        "RUST_LOG",
        "DOCFAN_DATA_DIR",
        "DOCFAN_LISTEN",
        "DOCFAN_LOG_FORMAT",
        "DOCFAN_BACKEND",
        "DOCFAN_URL",
        "DOCFAN_STREAM_",
        "DOCFAN_OPENSEARCH_URL",
    ] {
        assert!(help.contains(variable), "--help names {variable}:\n{help}");
    }
    let serve = text(&docfan(&["serve", "--help"], cwd.path()).await.stdout);
    let global = serve.find("Global options:").expect("a global group");
    let server = serve.find("Server options:").expect("a server group");
    let stream = serve.find("Stream options").expect("a stream group");
    let data_dir = serve.find("--data-dir").unwrap();
    let listen = serve.find("--listen").unwrap();
    let batch = serve.find("--stream-batch-size").unwrap();
    assert!(
        data_dir > global && (listen > server && listen < stream) && batch > stream,
        "options under their headings:\n{serve}"
    );
    assert!(serve.contains("DOCFAN_JWT_SECRET"), "{serve}");
}
