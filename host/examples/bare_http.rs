//! The physical limit for the HTTP load benchmark (`make bench-http`): a bare axum + rusqlite
//! server doing the SQL of Rapport's two hottest routes on the same database file, with none
//! of Rapport's work around it (no auth, no policies, no audit detail, no scores).
//!
//! - `GET  /v1/orgs/{org}/customers/{id}`: the customer row, its ids, tags, consents, scores and
//!   the latest 50 interactions;
//! - `POST /v1/orgs/{org}/customers`: one insert and one audit row, in one transaction.
//!
//! Usage: `bare_http DB_PATH ADDR` (prints `listening on http://ADDR`).

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use r2d2_sqlite::SqliteConnectionManager;
use rusqlite::{OptionalExtension, params};
use serde_json::{Value, json};

struct Db {
    reads: r2d2::Pool<SqliteConnectionManager>,
    /// SQLite has one writer: one connection for writes, as Rapport has.
    write: Mutex<rusqlite::Connection>,
}

type Shared = Arc<Db>;

fn org_id(conn: &rusqlite::Connection, slug: &str) -> rusqlite::Result<Option<i64>> {
    conn.prepare_cached("SELECT id FROM orgs WHERE slug = ?1")?.query_row([slug], |r| r.get(0)).optional()
}

fn profile(conn: &rusqlite::Connection, org: &str, id: i64) -> rusqlite::Result<Option<Value>> {
    let Some(org) = org_id(conn, org)? else { return Ok(None) };
    let Some(mut c) = conn
        .prepare_cached(
            "SELECT id, name, email, phone, branch, distributor_id, attributes, created_at, updated_at \
             FROM customers WHERE org_id = ?1 AND id = ?2",
        )?
        .query_row(params![org, id], |r| {
            Ok(json!({
                "id": r.get::<_, i64>(0)?, "name": r.get::<_, Option<String>>(1)?, "email": r.get::<_, Option<String>>(2)?,
                "phone": r.get::<_, Option<String>>(3)?, "branch": r.get::<_, Option<String>>(4)?,
                "distributor": r.get::<_, Option<i64>>(5)?,
                "attributes": serde_json::from_str::<Value>(&r.get::<_, String>(6)?).unwrap_or_default(),
                "created_at": r.get::<_, i64>(7)?, "updated_at": r.get::<_, i64>(8)?,
            }))
        })
        .optional()?
    else {
        return Ok(None);
    };
    let list = |sql: &str, f: &dyn Fn(&rusqlite::Row) -> rusqlite::Result<Value>| -> rusqlite::Result<Vec<Value>> {
        conn.prepare_cached(sql)?.query_map([id], |r| f(r))?.collect()
    };
    c["external_ids"] = json!(list("SELECT source, external_id FROM customer_ids WHERE customer_id = ?1", &|r| Ok(
        json!({"source": r.get::<_, String>(0)?, "id": r.get::<_, String>(1)?})
    ))?);
    c["tags"] =
        json!(list("SELECT tag FROM customer_tags WHERE customer_id = ?1", &|r| Ok(json!(r.get::<_, String>(0)?)))?);
    c["consents"] = json!(list("SELECT purpose, basis, given_at FROM consents WHERE customer_id = ?1", &|r| Ok(
        json!({"purpose": r.get::<_, String>(0)?, "basis": r.get::<_, String>(1)?, "given_at": r.get::<_, i64>(2)?})
    ))?);
    c["scores"] = json!(list("SELECT plugin, name, value FROM scores WHERE customer_id = ?1", &|r| Ok(json!([
        format!("{}.{}", r.get::<_, String>(0)?, r.get::<_, String>(1)?),
        r.get::<_, Option<f64>>(2)?
    ])))?);
    c["timeline"] = json!(list(
        "SELECT id, kind, channel, source, external_id, occurred_at, amount_minor, currency, subject FROM interactions \
         WHERE customer_id = ?1 ORDER BY occurred_at DESC, id DESC LIMIT 50",
        &|r| Ok(json!({
            "id": r.get::<_, i64>(0)?, "kind": r.get::<_, String>(1)?, "channel": r.get::<_, String>(2)?,
            "source": r.get::<_, String>(3)?, "external_id": r.get::<_, Option<String>>(4)?,
            "occurred_at": r.get::<_, i64>(5)?, "amount_minor": r.get::<_, Option<i64>>(6)?,
            "currency": r.get::<_, Option<String>>(7)?, "subject": r.get::<_, Option<String>>(8)?,
        }))
    )?);
    Ok(Some(c))
}

async fn get_customer(
    State(db): State<Shared>,
    Path((org, id)): Path<(String, i64)>,
) -> (StatusCode, axum::Json<Value>) {
    let found = tokio::task::spawn_blocking(move || {
        let conn = db.reads.get().expect("a pooled connection");
        profile(&conn, &org, id)
    })
    .await
    .expect("no panic");
    match found {
        Ok(Some(v)) => (StatusCode::OK, axum::Json(v)),
        Ok(None) => (StatusCode::NOT_FOUND, axum::Json(json!({"detail": "not found"}))),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, axum::Json(json!({"detail": e.to_string()}))),
    }
}

async fn create_customer(
    State(db): State<Shared>,
    Path(org): Path<String>,
    axum::Json(body): axum::Json<Value>,
) -> (StatusCode, axum::Json<Value>) {
    let done = tokio::task::spawn_blocking(move || -> rusqlite::Result<Value> {
        let mut conn = db.write.lock().expect("the writer");
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let org = org_id(&tx, &org)?.unwrap_or(0);
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
        let email = body["email"].as_str().map(str::to_owned);
        tx.prepare_cached(
            "INSERT INTO customers (org_id, name, email, phone, branch, attributes, created_at, updated_at, email_norm) \
             VALUES (?1, ?2, ?3, ?4, ?5, '{}', ?6, ?6, lower(?3))",
        )?
        .execute(params![org, body["name"].as_str(), email, body["phone"].as_str(), body["branch"].as_str(), now])?;
        let id = tx.last_insert_rowid();
        tx.prepare_cached(
            "INSERT INTO audit (org_id, at, actor, action, entity, entity_id, detail) VALUES (?1, ?2, 'bench', \
             'customer.create', 'customer', ?3, ?4)",
        )?
        .execute(params![org, now, id, body.to_string()])?;
        tx.commit()?;
        Ok(json!({"id": id, "name": body["name"], "email": email}))
    })
    .await
    .expect("no panic");
    match done {
        Ok(v) => (StatusCode::CREATED, axum::Json(v)),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, axum::Json(json!({"detail": e.to_string()}))),
    }
}

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let (Some(path), Some(addr)) = (args.next(), args.next()) else {
        anyhow::bail!("usage: bare_http DB_PATH ADDR");
    };
    // The pragmas Rapport's store sets (the database is already in WAL mode).
    let init = |c: &mut rusqlite::Connection| {
        c.execute_batch(
            "PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 10000; PRAGMA synchronous = NORMAL; PRAGMA cache_size = -65536;",
        )
    };
    let manager = SqliteConnectionManager::file(&path).with_init(init);
    let reads = r2d2::Pool::builder().max_size(8).build(manager)?;
    let mut write = rusqlite::Connection::open(&path)?;
    init(&mut write)?;
    let db = Arc::new(Db { reads, write: Mutex::new(write) });
    let app = Router::new()
        .route("/v1/orgs/{org}/customers/{id}", get(get_customer))
        .route("/v1/orgs/{org}/customers", post(create_customer))
        .with_state(db);
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(&addr).await?;
        println!("listening on http://{}", listener.local_addr()?);
        axum::serve(listener, app).await?;
        anyhow::Ok(())
    })
}
