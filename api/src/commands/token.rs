//! `docfan token <user>`: mints a token with the server's secret, and prints a sign-in
//! link to the server.
//!
//! The secret is found the way `docfan serve` finds it (`DOCFAN_JWT_SECRET`, else the
//! data directory's `jwt-secret`), in the same data directory (`--data-dir`,
//! `DOCFAN_DATA_DIR`, default `./docfan-data`), and the token carries the issuer and
//! audience the server checks (`DOCFAN_JWT_ISSUER`, `DOCFAN_JWT_AUDIENCE`). When there is
//! no secret, it refuses rather than create one the running server does not know (its
//! tokens would all be 401), unless `--create-secret` says to. With an identity
//! provider (`DOCFAN_JWT_JWKS_URL`) it refuses: the server accepts only the provider's
//! tokens. The link points at `--url`, else the address `serve` recorded in the data
//! directory, else `DOCFAN_LISTEN`, else the default.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use shared::auth::{self, TokenAuthority};
use shared::clock::{Clock, SystemClock};
use shared::domain::UserId;

use super::cli::TokenArgs;
use super::serve::{recorded_url, token_config};

/// Where the link points when nothing says otherwise (`serve`'s default address).
pub const DEFAULT_URL: &str = "http://127.0.0.1:8080";

pub fn run(data_dir: &Path, args: &TokenArgs) -> anyhow::Result<()> {
    let user = UserId::parse(args.user.clone()).map_err(|e| anyhow::anyhow!("{e}"))?;
    let set = |name: &str| std::env::var(name).is_ok_and(|s| !s.trim().is_empty());
    if set(auth::env::JWKS_URL) {
        anyhow::bail!(
            "{} is set: the server accepts only tokens from that identity provider, so sign in there \
             (its tokens go in `Authorization: Bearer …`, and in the web editor's /#token=… link)",
            auth::env::JWKS_URL
        );
    }
    let secret_file = data_dir.join(auth::SECRET_FILE);
    if !set(auth::env::SECRET) && !args.create_secret && !secret_file.exists() {
        anyhow::bail!(
            "no JWT secret: {secret} is not set and there is no {} \
             (the data directory comes from --data-dir, else DOCFAN_DATA_DIR, else ./docfan-data).\n\
             A token signed with a new secret would be rejected by a server that runs with another one. \
             Either run this where `docfan serve` runs, point --data-dir at its data directory, \
             or set {secret} to the server's secret; \
             or pass --create-secret to create one there (then restart the server so it uses it).",
            absolute(&secret_file).display(),
            secret = auth::env::SECRET,
        );
    }
    let config = token_config(data_dir)?;
    if let Some(max) = config.max_lifetime
        && args.ttl > max
    {
        anyhow::bail!(
            "--ttl is {} seconds, longer than the {} seconds {} allows: the server would refuse the token",
            args.ttl.num_seconds(),
            max.num_seconds(),
            auth::env::MAX_LIFETIME_SECS
        );
    }
    let authority = TokenAuthority::from_config(config)?;
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
