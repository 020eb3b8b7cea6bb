//! `publish-in` through the host functions a component calls: `skiff:sql` opens the
//! transaction, `skiff:messaging` borrows it, and the outbox row shares its fate.

use prometheus_client::metrics::gauge::Gauge;
use std::sync::Arc;
use wasmtime::component::{Resource, ResourceTable};

use super::super::bindings::skiff::messaging::producer::Host as _;
use super::super::bindings::skiff::messaging::types::{Exchange, ExchangeKind};
use super::{Message, MessagingError, MessagingView, Outbox};
use crate::capability::sql::bindings::skiff::sql::client::{Host as _, HostTransaction as _};
use crate::capability::sql::{Database, DatabaseOptions, SqlClient, SqlView, TransactionSlot, Value};

fn message(id: &str) -> Message {
    Message {
        id: id.into(),
        routing_key: String::new(),
        content_type: "application/json".into(),
        headers: Vec::new(),
        body: b"{}".to_vec(),
    }
}

fn login_events() -> Exchange {
    Exchange { name: "user_login_event".into(), kind: ExchangeKind::Fanout }
}

async fn waiting(sql: &Arc<dyn SqlClient>) -> Vec<Value> {
    let rows = sql.query("SELECT id FROM skiff_outbox ORDER BY id", Vec::new()).await.unwrap();
    rows.rows.into_iter().flatten().collect()
}

/// Opens a transaction as a component does, publishes `id` in it, then ends it.
async fn publish_in_a_transaction(
    sql: &Arc<dyn SqlClient>,
    outbox: &Arc<Outbox>,
    table: &mut ResourceTable,
    id: &str,
    commit: bool,
) {
    let tx = SqlView::new(sql, table).begin().await.unwrap().unwrap();
    let borrowed = Resource::<TransactionSlot>::new_borrow(tx.rep());
    let mut view = MessagingView::new(Some(outbox), table);
    view.publish_in(borrowed, login_events(), message(id)).await.unwrap().unwrap();
    let mut view = SqlView::new(sql, table);
    let ended = if commit { view.commit(tx).await } else { view.rollback(tx).await };
    ended.unwrap().unwrap();
}

#[tokio::test]
async fn publish_in_a_rolled_back_transaction_stores_nothing_and_in_a_committed_one_stores_it_once() {
    // A database file, as a service has: a write outside the transaction would not share it.
    let dir = std::env::temp_dir().join(format!("skiff-publish-in-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let sql = Database::connect(&crate::capability::sql::sqlite_url(&dir, "auth"), &DatabaseOptions::default())
        .await
        .unwrap();
    let outbox = Arc::new(Outbox::new(sql.clone(), Gauge::default()));
    outbox.prepare().await.unwrap();
    let mut table = ResourceTable::new();

    publish_in_a_transaction(&sql, &outbox, &mut table, "rolled-back", false).await;
    assert!(waiting(&sql).await.is_empty(), "a rolled-back transaction publishes nothing");
    publish_in_a_transaction(&sql, &outbox, &mut table, "committed", true).await;
    assert_eq!(waiting(&sql).await, [Value::Text("committed".into())], "the committed one, once");

    // Outside a transaction, as before.
    let mut view = MessagingView::new(Some(&outbox), &mut table);
    view.publish(login_events(), message("plain")).await.unwrap().unwrap();
    let refused = view.publish(login_events(), message(" ")).await.unwrap();
    assert!(matches!(refused, Err(MessagingError::Invalid(_))), "{refused:?}");
    // A component cannot sign for the host or set the attempt count.
    let mut forged = message("forged");
    forged.headers.push(("X-Skiff-Attempt".into(), "5".into()));
    let refused = view.publish(login_events(), forged).await.unwrap();
    assert!(matches!(&refused, Err(MessagingError::Invalid(why)) if why.contains("x-skiff-")), "{refused:?}");
    assert_eq!(waiting(&sql).await, [Value::Text("committed".into()), Value::Text("plain".into())]);
    let _ = std::fs::remove_dir_all(&dir);
}
