//! `docfan token <user>`: mints a token with the configured secret.

use std::path::Path;

use shared::auth::TokenAuthority;
use shared::clock::{Clock, SystemClock};
use shared::domain::UserId;

use super::cli::TokenArgs;
use super::serve::load_secret;

pub fn run(data_dir: &Path, args: &TokenArgs) -> anyhow::Result<()> {
    let user = UserId::parse(args.user.clone()).map_err(|e| anyhow::anyhow!("{e}"))?;
    let secret = load_secret(data_dir)?;
    let authority = TokenAuthority::new(&secret)?;
    let token = authority.issue(&user, args.ttl, SystemClock.now());
    println!("{token}");
    eprintln!(
        "Sign in as {user} in the web editor: http://{}/#token={token}",
        args.listen
    );
    Ok(())
}
