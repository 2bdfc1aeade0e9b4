//! The result: downloaded to a temporary file beside the store, checked
//! (a valid PNG or MP4), then committed as a candidate.

use super::*;

/// Download the result to a temporary file beside the store (streamed: a
/// large clip is never held in memory) and check it is what was asked for.
/// Err((true, why)): the result itself is bad; Err((false, why)): it did not
/// come through.
pub(super) async fn fetch(
    ctx: &Ctx,
    job: &CandidateJob,
    results: &[String],
) -> Result<tempfile::NamedTempFile, (bool, String)> {
    let url = results
        .first()
        .ok_or((true, "the service returned no result file".to_string()))?;
    let mut last = String::new();
    let mut bad = false;
    for attempt in 0..3 {
        let mut tmp = tempfile::Builder::new()
            .prefix("download-")
            .tempfile_in(ctx.store.root().join("tmp"))
            .map_err(|e| {
                (
                    false,
                    format!("cannot create a temporary file in the store: {e}"),
                )
            })?;
        match ctx
            .generator
            .download_to(url, ctx.policy.download_limit, tmp.as_file_mut())
            .await
        {
            Ok(size) => {
                let path = tmp.path().to_path_buf();
                let kind = job.kind;
                let ok = tokio::task::spawn_blocking(move || media_ok(&path, kind))
                    .await
                    .unwrap_or(false);
                if ok {
                    return Ok(tmp);
                }
                // A tunnel error page or a cut-off file: fetch it again before
                // paying for a new generation.
                bad = true;
                last = format!(
                    "the downloaded file is not a valid {} ({size} bytes)",
                    if job.kind == TaskKind::Image {
                        "PNG"
                    } else {
                        "MP4"
                    }
                );
            }
            Err(e) => {
                bad = false;
                last = format!("download failed: {}", e.message());
            }
        }
        ctx.sleep(ctx.policy.poll_start * (attempt + 1)).await;
    }
    Err((bad, last))
}

/// A PNG that decodes its header, or an MP4 whose top-level boxes (`ftyp`
/// first, a `moov`) add up to the file's size: a truncated file or an HTML
/// error page fails. Reads only box headers of a clip.
pub(super) fn media_ok(path: &std::path::Path, kind: TaskKind) -> bool {
    use nbbuild_cache::media;
    if kind == TaskKind::Image {
        return std::fs::read(path).is_ok_and(|b| media::is_png(&b));
    }
    let Ok(mut f) = std::fs::File::open(path) else {
        return false;
    };
    f.metadata()
        .is_ok_and(|m| media::is_mp4_in(&mut f, m.len()))
}

pub(super) async fn commit(
    ctx: &Ctx,
    job: &CandidateJob,
    remote: &str,
    file: tempfile::NamedTempFile,
) -> Result<Candidate, String> {
    let store = ctx.store.clone();
    let key = job.key.clone();
    let slot = job.slot;
    let mime = if job.kind == TaskKind::Image {
        "image/png"
    } else {
        "video/mp4"
    };
    let remote = remote.to_string();
    let route = ctx.generator.route().to_string();
    let reroll = job.reroll.clone();
    let res = tokio::task::spawn_blocking(move || {
        // The object is durable before the record names it.
        let (object, size) = store.put_file(file.path())?;
        drop(file);
        let cand = Candidate {
            slot,
            object,
            mime: mime.into(),
            size,
            created: now_ms(),
            qa: None,
            qa_attempts: 0,
            url: None,
            remote_task: Some(remote),
            route: Some(route),
        };
        store.commit_replacing(&key, cand.clone(), reroll.as_deref())?;
        Ok::<_, nbbuild_cache::StoreError>(cand)
    })
    .await;
    match res {
        Ok(Ok(c)) => {
            ctx.last_progress
                .store(now_ms(), std::sync::atomic::Ordering::SeqCst);
            ctx.report.event(Event::CandidateDone {
                task: job.task.clone(),
                slot: job.slot,
            });

            Ok(c)
        }
        Ok(Err(e)) => {
            ctx.halt(&format!("the store cannot commit: {e}"));
            Err(format!("cannot store the candidate: {e}"))
        }
        Err(e) => Err(format!("cannot store the candidate: {e}")),
    }
}
