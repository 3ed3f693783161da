//! The run's status comment on its issue or pull request (SPEC §9): one comment per run, found by a
//! hidden marker and edited in place, showing stage, agent, status, a short timeline, the PR and a
//! console link, in the project's language (`settings.locale`: `en` or `ru`). Status changes enqueue
//! one coalesced job per run; the job renders what the database says when it runs.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::json;
use uuid::Uuid;

use super::comment::{ProviderDeps, connect, job_error};
use crate::domain::provider::{ProviderConnector, RepositoryProvider};
use crate::queue::{JobContext, JobError, NewJob};
use crate::sql;
use crate::store::audit;
use crate::store::map_sqlx_error;

/// The job that (re)renders run `run_id`'s status comment after it became `status`: one unfinished
/// per (run, status), so repeats coalesce but a later status always gets its own rendering even
/// while an earlier one runs.
pub fn job(run_id: Uuid, status: &str, correlation: &str) -> NewJob {
    NewJob::new(json!({ "run_id": run_id }))
        .unique_key(format!("status:{run_id}:{status}"))
        .correlation_id(Uuid::parse_str(correlation).unwrap_or(run_id))
}

#[derive(Deserialize)]
struct Payload {
    run_id: Uuid,
}

#[derive(sqlx::FromRow, Debug, Clone, PartialEq)]
struct View {
    id: Uuid,
    repository_id: Uuid,
    target_number: i32,
    status: String,
    stage: Option<String>,
    trigger_label: String,
    agent_key: String,
    attempt: i32,
    pr_url: Option<String>,
    failure_reason: Option<String>,
    locale: String,
}

async fn read(
    pool: &sqlx::PgPool,
    run_id: Uuid,
) -> Result<Option<(View, Vec<(String, DateTime<Utc>)>)>, JobError> {
    let mut conn = pool.acquire().await.map_err(map_sqlx_error)?;
    let Some(view) = sqlx::query_as::<_, View>(sql!("agent_runs/status_view"))
        .bind(run_id)
        .fetch_optional(&mut *conn)
        .await
        .map_err(map_sqlx_error)?
    else {
        return Ok(None);
    };
    let timeline = sqlx::query_as(sql!("flow_events/run_timeline"))
        .bind(run_id)
        .fetch_all(&mut *conn)
        .await
        .map_err(map_sqlx_error)?;
    Ok(Some((view, timeline)))
}

/// Words of the comment in one language.
struct Words {
    status: fn(&str) -> &'static str,
    stage: &'static str,
    agent: &'static str,
    attempt: &'static str,
    timeline: &'static str,
    console: &'static str,
    pull_request: &'static str,
    reason: &'static str,
}

const EN: Words = Words {
    status: |s| match s {
        "pending" => "queued",
        "waiting" => "waiting",
        "starting" => "starting",
        "running" => "running",
        "succeeded" => "succeeded",
        "failed" => "failed",
        "canceled" => "canceled",
        "created" => "created",
        "relaunched" => "relaunched on a new pod",
        _ => "unknown",
    },
    stage: "Stage",
    agent: "Agent",
    attempt: "attempt",
    timeline: "Timeline",
    console: "Open in the console",
    pull_request: "Pull request",
    reason: "Reason",
};

const RU: Words = Words {
    status: |s| match s {
        "pending" => "в очереди",
        "waiting" => "ожидает",
        "starting" => "запускается",
        "running" => "выполняется",
        "succeeded" => "завершён успешно",
        "failed" => "завершён с ошибкой",
        "canceled" => "отменён",
        "created" => "создан",
        "relaunched" => "перезапущен на новом поде",
        _ => "неизвестно",
    },
    stage: "Этап",
    agent: "Агент",
    attempt: "попытка",
    timeline: "Хронология",
    console: "Открыть в консоли",
    pull_request: "Пулл-реквест",
    reason: "Причина",
};

fn render(view: &View, timeline: &[(String, DateTime<Utc>)], console: &str) -> String {
    let w = if view.locale == "ru" { &RU } else { &EN };
    let stage = view.stage.as_deref().unwrap_or(view.trigger_label.as_str());
    let mut out = format!(
        "**codex-k8s** · {}: `{stage}` · {}: `{}` · **{}** ({} {})\n",
        w.stage,
        w.agent,
        view.agent_key,
        (w.status)(&view.status),
        w.attempt,
        view.attempt
    );
    if let Some(reason) = &view.failure_reason {
        out.push_str(&format!("\n{}: {reason}\n", w.reason));
    }
    if !timeline.is_empty() {
        out.push_str(&format!("\n{}:\n", w.timeline));
        for (event, at) in timeline {
            let step = event.strip_prefix("run.").unwrap_or(event);
            let step = (w.status)(step);
            let step = if step == (w.status)("") {
                event.as_str()
            } else {
                step
            };
            out.push_str(&format!(
                "- {} — {step}\n",
                at.format("%Y-%m-%d %H:%M:%S UTC")
            ));
        }
    }
    if let Some(pr) = &view.pr_url {
        out.push_str(&format!("\n{}: {pr}\n", w.pull_request));
    }
    out.push_str(&format!(
        "\n[{}]({}/runs/{})",
        w.console,
        console.trim_end_matches('/'),
        view.id
    ));
    out
}

pub async fn handle<C: ProviderConnector>(
    ctx: JobContext,
    deps: Arc<ProviderDeps<C>>,
) -> Result<(), JobError> {
    let Payload { run_id } = ctx.parse_payload()?;
    let Some((mut view, mut timeline)) = read(&deps.pool, run_id).await? else {
        return Err(JobError::permanent(format!("run {run_id} does not exist")));
    };
    let number = u64::try_from(view.target_number)
        .map_err(|_| JobError::permanent(format!("invalid item number {}", view.target_number)))?;
    let (repo, provider) = connect(&deps, view.repository_id).await?;
    let marker = format!("<!-- codex-k8s:run:{run_id} -->");
    let mut tx = deps.pool.begin().await.map_err(map_sqlx_error)?;
    sqlx::query(sql!("agent_runs/lock_status_comment"))
        .bind(run_id)
        .execute(&mut *tx)
        .await
        .map_err(map_sqlx_error)?;
    // Re-read under the lock (an earlier job may have rendered meanwhile), and again after posting
    // in case the status moved while this job ran.
    if let Some((now, now_timeline)) = read(&deps.pool, run_id).await? {
        (view, timeline) = (now, now_timeline);
    }
    let mut comment = None;
    for _ in 0..3 {
        let body = render(&view, &timeline, &deps.console_url);
        comment = Some(
            provider
                .upsert_comment(&repo, number, &marker, &body)
                .await
                .map_err(job_error)?,
        );
        match read(&deps.pool, run_id).await? {
            Some((now, now_timeline)) if now != view || now_timeline != timeline => {
                (view, timeline) = (now, now_timeline);
            }
            _ => break,
        }
    }
    let comment = comment.expect("rendered at least once");
    ctx.lock_lease(&mut tx).await?;
    let event = if comment.created {
        "github.status_comment.created"
    } else {
        "github.status_comment.updated"
    };
    audit::append_system(
        &mut tx,
        &ctx.correlation_id.to_string(),
        Some(run_id),
        event,
        json!({ "comment_id": comment.id, "status": view.status, "number": number }),
    )
    .await?;
    tx.commit().await.map_err(map_sqlx_error)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_comment_speaks_the_projects_language() {
        let view = View {
            id: Uuid::nil(),
            repository_id: Uuid::nil(),
            target_number: 5,
            status: "failed".into(),
            stage: Some("dev".into()),
            trigger_label: "run:dev".into(),
            agent_key: "dev".into(),
            attempt: 2,
            pr_url: Some("https://github.com/o/r/pull/9".into()),
            failure_reason: Some("the agent exited with code 3".into()),
            locale: "ru".into(),
        };
        let at = DateTime::parse_from_rfc3339("2026-11-22T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let timeline = vec![
            ("run.created".to_owned(), at),
            ("run.failed".to_owned(), at),
        ];
        let ru = render(&view, &timeline, "https://codex.example.com/");
        assert!(
            ru.contains("Этап: `dev`") && ru.contains("**завершён с ошибкой** (попытка 2)"),
            "{ru}"
        );
        assert!(ru.contains("- 2026-11-22 12:00:00 UTC — создан"), "{ru}");
        assert!(ru.contains("Причина: the agent exited with code 3"), "{ru}");
        assert!(
            ru.contains("Пулл-реквест: https://github.com/o/r/pull/9"),
            "{ru}"
        );
        assert!(ru.ends_with("[Открыть в консоли](https://codex.example.com/runs/00000000-0000-0000-0000-000000000000)"), "{ru}");
        let en = render(
            &View {
                locale: "en".into(),
                ..view
            },
            &timeline,
            "https://codex.example.com",
        );
        assert!(
            en.contains("Stage: `dev`") && en.contains("**failed** (attempt 2)"),
            "{en}"
        );
    }
}
