//! `docfan token <user>`: mints a token with the server's secret, and prints a sign-in
//! link to the server.
//!
//! The secret is found the way `docfan serve` finds it (`DOCFAN_JWT_SECRET`, else the
//! data directory's `jwt-secret`), in the same data directory (`--data-dir`,
//! `DOCFAN_DATA_DIR`, default `./docfan-data`). When there is none, it refuses rather
//! than create one the running server does not know (its tokens would all be 401),
//! unless `--create-secret` says to. The link points at `--url`, else the address
//! `serve` recorded in the data directory, else `DOCFAN_LISTEN`, else the default.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use shared::auth::{self, TokenAuthority};
use shared::clock::{Clock, SystemClock};
use shared::domain::UserId;

use super::cli::TokenArgs;
use super::serve::{SECRET_ENV, load_secret, recorded_url};

/// Where the link points when nothing says otherwise (`serve`'s default address).
pub const DEFAULT_URL: &str = "http://127.0.0.1:8080";

pub fn run(data_dir: &Path, args: &TokenArgs) -> anyhow::Result<()> {
    let user = UserId::parse(args.user.clone()).map_err(|e| anyhow::anyhow!("{e}"))?;
    let from_env = std::env::var(SECRET_ENV).is_ok_and(|s| !s.is_empty());
    let secret_file = data_dir.join(auth::SECRET_FILE);
    if !from_env && !args.create_secret && !secret_file.exists() {
        anyhow::bail!(
            "no JWT secret: {SECRET_ENV} is not set and there is no {} \
             (the data directory comes from --data-dir, else DOCFAN_DATA_DIR, else ./docfan-data).\n\
             A token signed with a new secret would be rejected by a server that runs with another one. \
             Either run this where `docfan serve` runs, point --data-dir at its data directory, \
             or set {SECRET_ENV} to the server's secret; \
             or pass --create-secret to create one there (then restart the server so it uses it).",
            absolute(&secret_file).display()
        );
    }
    let secret = load_secret(data_dir)?;
    let authority = TokenAuthority::new(&secret)?;
    let token = authority.issue(&user, args.ttl, SystemClock.now());
    println!("{token}");
    let base = server_url(data_dir, args.url.as_deref());
    eprintln!(
        "Sign in as {user} in the web editor: {}/#token={token}",
        base.trim_end_matches('/')
    );
    Ok(())
}

/// The server's address for links: `url`, else the one `serve` recorded in the data
/// directory, else `DOCFAN_LISTEN`, else [`DEFAULT_URL`].
pub fn server_url(data_dir: &Path, url: Option<&str>) -> String {
    if let Some(url) = url {
        return url.to_owned();
    }
    if let Some(recorded) = recorded_url(data_dir) {
        return recorded;
    }
    std::env::var("DOCFAN_LISTEN")
        .ok()
        .and_then(|listen| listen.parse::<SocketAddr>().ok())
        .map_or_else(|| DEFAULT_URL.to_owned(), super::serve::url_of)
}

fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_owned())
}
