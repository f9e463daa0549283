//! Rendering outbox rows into DMF messages at publish time (dmf-protocol.md §4, §5.2, §5.3):
//! which message represents an action, which action is a target's current one, when a new
//! deployment is held back behind a pending cancellation, and the BATCH_* and MULTI_ACTION
//! variants chosen by tenant configuration. Rendering from committed state means a message
//! always describes what is true when it leaves, and a target deleted meanwhile gets nothing.

use std::collections::{BTreeMap, HashMap};

use sqlx::PgConnection;

use super::inbound::now_ms;
use super::{Engine, config_keys};
use crate::dmf::envelope::{self, DeploymentTopic, Outbound};
use crate::dmf::outbound::{
    ActionRequest, Artifact, BatchDownloadRequest, BatchTarget, DownloadRequest, Hashes, Metadata,
    MultiActionElement, MultiActionPayload, SoftwareModule,
};
use crate::domain::action::{ActionStatus, ActionType};
use crate::domain::ids::{ActionId, DsId};
use crate::domain::maintenance::MaintenanceWindow;
use crate::domain::target::exchange_of;
use crate::store::actions::{self, ActionRow};
use crate::store::outbox::{Pending, Row};
use crate::store::{Result, repository, tenants};

/// At most this many actions are listed in one MULTI_ACTION (§7).
const MULTI_ACTION_LIMIT: usize = 100;

/// The messages one outbox row turned into (possibly none).
#[derive(Debug)]
pub struct Rendered {
    pub outbox_id: i64,
    pub messages: Vec<Outbound>,
}

struct Context {
    actions: HashMap<ActionId, ActionRow>,
    /// Open actions per target, weight descending then id ascending.
    open: HashMap<i64, Vec<ActionRow>>,
    modules: BTreeMap<DsId, Vec<SoftwareModule>>,
    flags: BTreeMap<String, BTreeMap<String, bool>>,
    now: i64,
}

impl Context {
    fn flag(&self, tenant: &str, key: &str) -> bool {
        self.flags
            .get(tenant)
            .and_then(|f| f.get(key))
            .copied()
            .unwrap_or(false)
    }

    fn request(&self, a: &ActionRow) -> DownloadRequest {
        DownloadRequest {
            action_id: a.id.0,
            target_security_token: a.security_token.clone(),
            software_modules: self.modules.get(&a.ds_id).cloned().unwrap_or_default(),
        }
    }

    /// §5.2 steps 2–4 for an active, not cancelling action.
    fn topic(&self, a: &ActionRow) -> DeploymentTopic {
        if a.status == ActionStatus::WaitForConfirmation.as_db() {
            return DeploymentTopic::Confirm;
        }
        let download_only = a.action_type == ActionType::DownloadOnly.as_db();
        let window_closed = match (&a.mw_schedule, &a.mw_duration, &a.mw_timezone) {
            (Some(s), Some(d), Some(z)) => !MaintenanceWindow::parse(s, d, z)
                .map(|w| w.is_open(self.now))
                .unwrap_or(false),
            _ => false,
        };
        if download_only || window_closed {
            DeploymentTopic::Download
        } else {
            DeploymentTopic::DownloadAndInstall
        }
    }

    fn is_cancel(a: &ActionRow) -> bool {
        a.status == ActionStatus::Canceling.as_db() || a.status == ActionStatus::Canceled.as_db()
    }

    /// The single message of §5.2 for one action; batch mode sends deployments as a batch of one.
    fn single(&self, a: &ActionRow, exchange: &str) -> Option<Outbound> {
        if Self::is_cancel(a) {
            return Some(envelope::encode_cancel(
                exchange,
                &a.tenant,
                &a.controller_id,
                a.id.0,
            ));
        }
        if !a.active {
            return None;
        }
        let topic = self.topic(a);
        if self.flag(&a.tenant, config_keys::BATCH_ASSIGNMENTS) {
            return Some(self.batch(&[a], exchange));
        }
        Some(envelope::encode_deployment(
            exchange,
            &a.tenant,
            &a.controller_id,
            topic,
            &self.request(a),
        ))
    }

    fn batch(&self, actions: &[&ActionRow], exchange: &str) -> Outbound {
        let first = actions[0];
        let download_only = self.topic(first) == DeploymentTopic::Download;
        let request = BatchDownloadRequest {
            timestamp: self.now,
            targets: actions
                .iter()
                .map(|a| BatchTarget {
                    action_id: a.id.0,
                    controller_id: a.controller_id.clone(),
                    target_security_token: a.security_token.clone(),
                })
                .collect(),
            software_modules: self.modules.get(&first.ds_id).cloned().unwrap_or_default(),
        };
        envelope::encode_batch(exchange, &first.tenant, download_only, &request)
    }

    /// MULTI_ACTION listing a target's open actions, or nothing when it has none.
    fn multi(&self, target: i64) -> Option<Outbound> {
        let open = self.open.get(&target)?;
        let first = open.first()?;
        let exchange = exchange_of(first.address.as_deref()?)?;
        let elements: Vec<MultiActionElement> = open
            .iter()
            .take(MULTI_ACTION_LIMIT)
            .map(|a| {
                if Self::is_cancel(a) {
                    MultiActionElement {
                        topic: crate::dmf::topic::CANCEL_DOWNLOAD.to_owned(),
                        action: MultiActionPayload::Cancel(ActionRequest { action_id: a.id.0 }),
                        weight: a.weight,
                    }
                } else {
                    MultiActionElement {
                        topic: self.topic(a).as_str().to_owned(),
                        action: MultiActionPayload::Deployment(self.request(a)),
                        weight: a.weight,
                    }
                }
            })
            .collect();
        Some(envelope::encode_multi_action(
            &exchange,
            &first.tenant,
            &first.controller_id,
            &elements,
        ))
    }

    fn multi_mode(&self, tenant: &str) -> bool {
        self.flag(tenant, config_keys::MULTI_ASSIGNMENTS)
    }

    fn has_other_cancelling(&self, a: &ActionRow) -> bool {
        self.open
            .get(&a.target_id)
            .is_some_and(|l| l.iter().any(|o| o.id != a.id && Self::is_cancel(o)))
    }

    fn render(&self, pending: &Pending) -> Vec<Outbound> {
        match pending {
            Pending::Message(m) => vec![m.clone()],
            Pending::Action(id) => {
                let Some(a) = self.actions.get(id) else {
                    return vec![];
                };
                if self.multi_mode(&a.tenant) {
                    return self.multi(a.target_id).into_iter().collect();
                }
                let Some(exchange) = a.address.as_deref().and_then(exchange_of) else {
                    return vec![];
                };
                // A new deployment waits until the device answered its pending cancel (§5.3).
                if !Self::is_cancel(a) && self.has_other_cancelling(a) {
                    return vec![];
                }
                self.single(a, &exchange).into_iter().collect()
            }
            Pending::Target(target) => {
                let Some(current) = self.open.get(target).and_then(|l| l.first()) else {
                    return vec![];
                };
                if self.multi_mode(&current.tenant) {
                    return self.multi(*target).into_iter().collect();
                }
                let Some(exchange) = current.address.as_deref().and_then(exchange_of) else {
                    return vec![];
                };
                self.single(current, &exchange).into_iter().collect()
            }
            Pending::Batch(ids) => {
                let rows: Vec<&ActionRow> =
                    ids.iter().filter_map(|id| self.actions.get(id)).collect();
                let Some(first) = rows.first() else {
                    return vec![];
                };
                if self.multi_mode(&first.tenant) {
                    return rows
                        .iter()
                        .filter_map(|a| self.multi(a.target_id))
                        .collect();
                }
                let ready: Vec<&ActionRow> = rows
                    .into_iter()
                    .filter(|a| {
                        a.active
                            && !Self::is_cancel(a)
                            && !self.has_other_cancelling(a)
                            && a.address.as_deref().and_then(exchange_of).is_some()
                    })
                    .collect();
                match ready
                    .first()
                    .and_then(|a| a.address.as_deref())
                    .and_then(exchange_of)
                {
                    Some(exchange) => vec![self.batch(&ready, &exchange)],
                    None => vec![],
                }
            }
        }
    }
}

fn software_module(m: &repository::ModulePayload) -> SoftwareModule {
    SoftwareModule {
        module_id: m.module_id,
        module_type: m.type_key.clone(),
        module_version: m.version.clone(),
        encrypted: m.encrypted,
        artifacts: m
            .artifacts
            .iter()
            .map(|a| Artifact {
                filename: a.filename.clone(),
                hashes: Hashes {
                    sha1: Some(a.hashes.sha1.clone()),
                    md5: Some(a.hashes.md5.clone()),
                },
                size: a.size,
                last_modified: a.last_modified_at,
                urls: [("HTTPS", &a.urls.url_https), ("HTTP", &a.urls.url_http)]
                    .into_iter()
                    .filter_map(|(k, v)| v.clone().map(|v| (k.to_owned(), v)))
                    .collect(),
            })
            .collect(),
        metadata: m
            .metadata
            .iter()
            .map(|(k, v)| Metadata {
                key: k.clone(),
                value: v.clone(),
            })
            .collect(),
    }
}

impl Engine {
    /// Read the state `pending` items refer to, with a few set-based queries.
    async fn context(&self, conn: &mut PgConnection, pending: &[&Pending]) -> Result<Context> {
        let mut action_ids = Vec::new();
        let mut target_ids = Vec::new();
        for p in pending {
            match p {
                Pending::Action(a) => action_ids.push(*a),
                Pending::Batch(ids) => action_ids.extend(ids),
                Pending::Target(t) => target_ids.push(*t),
                Pending::Message(_) => {}
            }
        }
        let mut ctx = Context {
            actions: HashMap::new(),
            open: HashMap::new(),
            modules: BTreeMap::new(),
            flags: BTreeMap::new(),
            now: now_ms(),
        };
        if action_ids.is_empty() && target_ids.is_empty() {
            return Ok(ctx);
        }
        for a in actions::by_ids(conn, &action_ids).await? {
            target_ids.push(a.target_id);
            ctx.actions.insert(a.id, a);
        }
        target_ids.sort_unstable();
        target_ids.dedup();
        for a in actions::open_of_targets(conn, &target_ids).await? {
            ctx.open.entry(a.target_id).or_default().push(a);
        }
        let mut ds: Vec<i64> = ctx
            .actions
            .values()
            .chain(ctx.open.values().flatten())
            .map(|a| a.ds_id.0)
            .collect();
        ds.sort_unstable();
        ds.dedup();
        ctx.modules = repository::modules_of_sets(conn, &ds)
            .await?
            .into_iter()
            .map(|(id, ms)| (DsId(id), ms.iter().map(software_module).collect()))
            .collect();
        let mut names: Vec<&str> = ctx
            .actions
            .values()
            .chain(ctx.open.values().flatten())
            .map(|a| a.tenant.as_str())
            .collect();
        names.sort_unstable();
        names.dedup();
        let names: Vec<String> = names.into_iter().map(str::to_owned).collect();
        ctx.flags = tenants::flags_by_name(
            conn,
            &names,
            &[
                config_keys::MULTI_ASSIGNMENTS,
                config_keys::BATCH_ASSIGNMENTS,
            ],
        )
        .await?;
        Ok(ctx)
    }

    /// Render claimed outbox rows.
    pub async fn render(&self, conn: &mut PgConnection, rows: &[Row]) -> Result<Vec<Rendered>> {
        let pending: Vec<(i64, Option<Pending>)> =
            rows.iter().map(|r| (r.id, r.pending())).collect();
        let refs: Vec<&Pending> = pending.iter().filter_map(|(_, p)| p.as_ref()).collect();
        let ctx = self.context(conn, &refs).await?;
        Ok(pending
            .into_iter()
            .map(|(id, p)| Rendered {
                outbox_id: id,
                messages: p.map(|p| ctx.render(&p)).unwrap_or_default(),
            })
            .collect())
    }

    /// Render items now, inside the producing transaction, into ready messages: they describe
    /// the state this transaction commits, and leave through the publisher's fast lane right
    /// after the commit. Items that say nothing now (a deployment held back behind a pending
    /// cancellation, a target without a DMF address) vanish, as they would at publish time.
    pub async fn prerender(
        &self,
        conn: &mut PgConnection,
        items: &[Pending],
    ) -> Result<Vec<Pending>> {
        let refs: Vec<&Pending> = items.iter().collect();
        let ctx = self.context(conn, &refs).await?;
        Ok(items
            .iter()
            .flat_map(|p| ctx.render(p))
            .map(Pending::Message)
            .collect())
    }
}
