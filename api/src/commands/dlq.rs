//! `docfan dlq list` and `docfan dlq redrive [--id ID]`: the operator's view of the
//! dead-letter queue, and the way to handle its letters again once the cause is fixed.
//!
//! While `docfan serve` runs, both go through its admin socket ([`crate::admin`]): the
//! server redrives through its own fan-out (the search index has one writer, which it
//! holds), and notifications of redriven changes reach the clients subscribed to it.
//! With no server, redrive opens the fan-out's stores itself and holds the data
//! directory's lock meanwhile, so neither a server nor a restore starts under it;
//! notifications then go to no one (clients catch up from the history on their next
//! subscribe). Redriving webhook letters alone touches only the webhook outbox, so it
//! needs neither. A webhook delivery goes back into the outbox, and the rule's worker
//! delivers it (within seconds when `docfan serve` runs with that rule).

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use shared::clock::SystemClock;
use shared::embedded::{
    DATABASE_FILE, SqliteDeadLetterQueue, SqliteDocumentStore, SqliteWebhookOutbox,
};
use shared::events::EventRules;
use shared::ports::{DeadLetter, DeadLetterQueue, DeadLetterSource};
use stream_handler::redrive::RedriveOutcome;
use stream_handler::sinks::notifications::NoSubscribers;
use stream_handler::{EmbeddedFanout, FanoutConfig};

use super::cli::{Backend, DlqArgs, DlqCommand};
use crate::admin::client::{AdminClient, Reach, reach};

/// `docfan dlq …`, on the embedded dead-letter store or, with the AWS backend, on the
/// SQS poison-record queue.
pub async fn run(data_dir: &Path, backend: Backend, args: &DlqArgs) -> anyhow::Result<()> {
    match (backend, &args.command) {
        (Backend::Embedded, DlqCommand::List { limit, json }) => {
            list(data_dir, *limit, *json).await
        }
        (Backend::Embedded, DlqCommand::Redrive { id }) => redrive(data_dir, id.as_deref()).await,
        (Backend::Embedded, DlqCommand::Replay) => anyhow::bail!(
            "`dlq replay` reads the on-failure queue of the AWS stream mappings (DOCFAN_BACKEND=aws); \
             on one machine every failed record is kept whole in the dead-letter queue: use `dlq redrive`"
        ),
        (Backend::Aws, command) => on_aws(command).await,
    }
}

#[cfg(feature = "aws")]
async fn on_aws(command: &DlqCommand) -> anyhow::Result<()> {
    use shared::aws::{AwsClients, AwsConfig};
    let clients = AwsClients::load(AwsConfig::from_env()?).await?;
    match command {
        DlqCommand::List { limit, json } => {
            let letters = super::aws::list_dead_letters(&clients, *limit).await?;
            print_letters(&letters, *json, None)
        }
        DlqCommand::Redrive { id } => {
            let outcomes = super::aws::redrive_dead_letters(&clients, id.as_deref()).await?;
            report(&outcomes)
        }
        DlqCommand::Replay => {
            let outcomes = super::aws::replay_failed_batches(&clients).await?;
            let mut waiting = 0;
            for outcome in &outcomes {
                match &outcome.result {
                    Ok(records) => println!("{}\treplayed {records} records", outcome.message),
                    Err(why) => {
                        waiting += 1;
                        println!("{}\tstill waiting: {why}", outcome.message);
                    }
                }
            }
            println!(
                "{} batches replayed, {waiting} still waiting",
                outcomes.len() - waiting
            );
            anyhow::ensure!(waiting == 0, "{waiting} batches could not be replayed");
            Ok(())
        }
    }
}

#[cfg(not(feature = "aws"))]
async fn on_aws(_: &DlqCommand) -> anyhow::Result<()> {
    anyhow::bail!("this docfan was built without AWS support: build it with `--features api/aws`")
}

fn database(data_dir: &Path) -> anyhow::Result<std::path::PathBuf> {
    let db = data_dir.join(DATABASE_FILE);
    anyhow::ensure!(
        db.exists(),
        "no docfan database in {} (set --data-dir)",
        data_dir.display()
    );
    Ok(db)
}

/// One line about a letter: what it is about, and why it failed.
pub fn describe(letter: &DeadLetter) -> String {
    let p = &letter.payload;
    let about = match letter.source {
        DeadLetterSource::Stream => {
            let image = p["dynamodb"]
                .get("NewImage")
                .or_else(|| p["dynamodb"].get("OldImage"));
            format!(
                "{} document {} version {} (sequence {})",
                p["eventName"].as_str().unwrap_or("?"),
                p["dynamodb"]["Keys"]["id"]["S"].as_str().unwrap_or("?"),
                image
                    .and_then(|i| i["version"]["N"].as_str())
                    .unwrap_or("?"),
                p["dynamodb"]["SequenceNumber"].as_str().unwrap_or("?"),
            )
        }
        DeadLetterSource::Analysis => format!(
            "analysis of document {} version {}",
            p["documentId"].as_str().unwrap_or("?"),
            p["version"]
                .as_u64()
                .map_or("?".to_owned(), |v| v.to_string()),
        ),
        DeadLetterSource::Webhook => format!(
            "webhook rule {} event {} ({} of document {} version {})",
            p["rule"].as_str().unwrap_or("?"),
            p["event"]["id"].as_str().unwrap_or("?"),
            p["event"]["detail-type"].as_str().unwrap_or("?"),
            p["event"]["detail"]["documentId"].as_str().unwrap_or("?"),
            p["event"]["detail"]["version"]
                .as_u64()
                .map_or("?".to_owned(), |v| v.to_string()),
        ),
    };
    format!(
        "{}\t{}\t{}\tattempts {}\t{about}\t{}",
        letter.id,
        match letter.source {
            DeadLetterSource::Stream => "stream",
            DeadLetterSource::Analysis => "analysis",
            DeadLetterSource::Webhook => "webhook",
        },
        letter.failed_at.to_rfc3339(),
        letter.attempts,
        letter.reason,
    )
}

/// Lists through the running server when there is one, else from the database (a
/// read, which needs no lock).
async fn list(data_dir: &Path, limit: usize, json: bool) -> anyhow::Result<()> {
    let db = database(data_dir)?;
    if let Ok(server) = AdminClient::connect(data_dir).await {
        let listed = server.dead_letters(limit).await?;
        return print_letters(&listed.letters, json, Some(listed.total));
    }
    let dlq = SqliteDeadLetterQueue::open(&db)?;
    let letters = dlq.list(limit).await?;
    let total = dlq.depth().await?;
    print_letters(&letters, json, Some(total))
}

/// Prints letters as a table (or JSON lines), and how many more there are when known.
fn print_letters(letters: &[DeadLetter], json: bool, total: Option<u64>) -> anyhow::Result<()> {
    if json {
        for letter in letters {
            println!("{}", serde_json::to_string(letter)?);
        }
        return Ok(());
    }
    if letters.is_empty() {
        println!("the dead-letter queue is empty");
        return Ok(());
    }
    println!("id\tsource\tfailed at\tattempts\tabout\treason");
    for letter in letters {
        println!("{}", describe(letter));
    }
    if let Some(total) = total.filter(|t| *t > letters.len() as u64) {
        println!("… and {} more (use --limit)", total - letters.len() as u64);
    }
    Ok(())
}

async fn redrive(data_dir: &Path, id: Option<&str>) -> anyhow::Result<()> {
    let db = database(data_dir)?;
    // Webhook deliveries only go back into the outbox: no search index, no lock, so
    // they are redriven beside a running server, whose workers deliver them.
    let dlq = SqliteDeadLetterQueue::open(&db)?;
    let selected: Vec<DeadLetter> = dlq
        .list(stream_handler::redrive::MAX_REDRIVE)
        .await?
        .into_iter()
        .filter(|l| id.is_none_or(|id| l.id == id))
        .collect();
    if !selected.is_empty()
        && selected
            .iter()
            .all(|l| l.source == DeadLetterSource::Webhook)
    {
        let outbox = SqliteWebhookOutbox::open(&db, EventRules::default(), Arc::new(SystemClock))?;
        let outcomes = stream_handler::redrive::redrive_webhooks(&outbox, &dlq, id).await?;
        return report(&outcomes);
    }
    let _lock = match reach(data_dir).await? {
        Reach::Here(lock) => lock,
        Reach::Server(server) => return report(&server.redrive(id).await?),
    };
    let store = Arc::new(SqliteDocumentStore::open(&db)?);
    let fanout = EmbeddedFanout::open(
        data_dir,
        store,
        Arc::new(NoSubscribers),
        Arc::new(SystemClock),
        FanoutConfig::default(),
    )
    .context("opening the fan-out's stores")?;
    let outcomes = fanout.redrive(id).await.map_err(|e| match e {
        shared::Error::NotFound => anyhow::anyhow!("no dead letter with id {}", id.unwrap_or("")),
        e => e.into(),
    })?;
    report(&outcomes)
}

/// Prints what became of each redriven letter; fails when any still fails.
fn report(outcomes: &[RedriveOutcome]) -> anyhow::Result<()> {
    let failed = outcomes.iter().filter(|o| o.result.is_err()).count();
    for outcome in outcomes {
        match &outcome.result {
            Ok(()) => println!("{}\tredriven", outcome.id),
            Err(reason) => println!("{}\tstill failing: {reason}", outcome.id),
        }
    }
    println!(
        "{} redriven, {failed} still failing",
        outcomes.len() - failed
    );
    anyhow::ensure!(failed == 0, "{failed} dead letters still fail");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::domain::{Body, Title, UserId};
    use shared::ports::AuditLog;
    use shared::service::{DocumentService, NewDocument};

    #[tokio::test]
    async fn letters_are_listed_and_redriven() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join(DATABASE_FILE);
        let record = {
            let store = Arc::new(SqliteDocumentStore::open(&db).unwrap());
            let docs = DocumentService::new(store.clone(), Arc::new(SystemClock));
            docs.create(
                &UserId::parse("ann").unwrap(),
                NewDocument {
                    title: Title::parse("Lost").unwrap(),
                    body: Body::parse("found again").unwrap(),
                    collaborators: Default::default(),
                },
            )
            .await
            .unwrap();
            let rows = store.change_feed().read_after(0, 10).await.unwrap();
            serde_json::from_str::<serde_json::Value>(&rows[0].record).unwrap()
        };
        let dlq = SqliteDeadLetterQueue::open(&db).unwrap();
        let id = dlq
            .put(&DeadLetter {
                id: String::new(),
                source: DeadLetterSource::Stream,
                payload: record.clone(),
                reason: "audit: disk on fire".into(),
                attempts: 3,
                failed_at: chrono::Utc::now(),
            })
            .await
            .unwrap();
        let line = describe(&dlq.list(1).await.unwrap()[0]);
        assert!(line.starts_with(&format!("{id}\tstream\t")), "{line}");
        assert!(line.contains("INSERT document"), "{line}");
        assert!(line.contains("version 1"), "{line}");
        assert!(line.ends_with("audit: disk on fire"), "{line}");
        run(
            dir.path(),
            Backend::Embedded,
            &DlqArgs {
                command: DlqCommand::List {
                    limit: 10,
                    json: false,
                },
            },
        )
        .await
        .unwrap();

        let missing = run(
            dir.path(),
            Backend::Embedded,
            &DlqArgs {
                command: DlqCommand::Redrive {
                    id: Some("999".into()),
                },
            },
        )
        .await;
        assert!(missing.unwrap_err().to_string().contains("no dead letter"));
        run(
            dir.path(),
            Backend::Embedded,
            &DlqArgs {
                command: DlqCommand::Redrive { id: Some(id) },
            },
        )
        .await
        .unwrap();
        assert_eq!(dlq.depth().await.unwrap(), 0);
        let audit = shared::embedded::SqliteAuditLog::open(&db).unwrap();
        let doc_id = shared::domain::DocumentId::parse(
            record["dynamodb"]["Keys"]["id"]["S"].as_str().unwrap(),
        )
        .unwrap();
        assert!(audit.get(&doc_id, 1).await.unwrap().is_some());
    }
}
