//! Large files: multipart upload in fixed-size parts, a few in flight,
//! aborted on failure so no half object is ever left behind.

use super::*;

impl R2Mirror {
    pub(super) async fn put_multipart(
        &self,
        path: &Path,
        key: &str,
        mime: &str,
        len: u64,
        expect: Option<&str>,
    ) -> Result<(), MirrorError> {
        // At most 10 000 parts: grow the part size for huge files.
        let part_size = self.part_size.max(len.div_ceil(10_000).div_ceil(MIB) * MIB);
        let parts = len.div_ceil(part_size);
        let created = self
            .client
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .content_type(mime)
            .cache_control(CACHE_CONTROL)
            .send()
            .await
            .map_err(|e| self.errors().sdk("start multipart upload", Some(key), e))?;
        let Some(upload_id) = created.upload_id().map(str::to_string) else {
            return Err(MirrorError::new(format!(
                "the server started a multipart upload of `{key}` without an upload id"
            ))
            .retryable(true));
        };
        let result = self
            .upload_parts(path, key, &upload_id, part_size, parts, len, expect)
            .await;
        let completed = match result {
            Ok(completed) => completed,
            Err(e) => {
                self.abort(key, &upload_id).await;
                return Err(e);
            }
        };
        if let Err(e) = self
            .client
            .complete_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(&upload_id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(completed))
                    .build(),
            )
            .send()
            .await
        {
            self.abort(key, &upload_id).await;
            return Err(self.errors().sdk("complete multipart upload", Some(key), e));
        }
        Ok(())
    }

    /// Upload parts `1..=parts`, at most `part_concurrency` at once, each
    /// streamed from the file (a clip is never held in memory). With
    /// `expect`, the whole file is hashed first: a mismatch is known before
    /// any part is sent, and the destination never holds the object. Store
    /// objects are immutable files, so what was hashed is what is sent.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn upload_parts(
        &self,
        path: &Path,
        key: &str,
        upload_id: &str,
        part_size: u64,
        parts: u64,
        len: u64,
        expect: Option<&str>,
    ) -> Result<Vec<CompletedPart>, MirrorError> {
        if let Some(expected) = expect {
            let p = path.to_path_buf();
            let hashed = tokio::task::spawn_blocking(move || nbbuild_cache::hash_file(&p))
                .await
                .map_err(|e| MirrorError::new(format!("hashing task failed: {e}")))?
                .map_err(|e| MirrorError::new(format!("cannot read {}: {e}", path.display())))?;
            if hashed.0 != expected || hashed.1 != len {
                return Err(MirrorError::mismatch(path, expected, &hashed.0));
            }
        }
        let mut set = tokio::task::JoinSet::new();
        let mut done: Vec<CompletedPart> = Vec::with_capacity(parts as usize);
        let mut next = 1u64;
        let mut first_error: Option<MirrorError> = None;
        loop {
            while first_error.is_none() && next <= parts && set.len() < self.part_concurrency {
                let n = next;
                next += 1;
                let offset = (n - 1) * part_size;
                let size = part_size.min(len - offset);
                let client = self.client.clone();
                let (bucket, key, upload_id) =
                    (self.bucket.clone(), key.to_string(), upload_id.to_string());
                let path: PathBuf = path.to_path_buf();
                let errors = self.errors();
                set.spawn(async move {
                    let body = ByteStream::read_from()
                        .path(&path)
                        .offset(offset)
                        .length(Length::Exact(size))
                        .build()
                        .await
                        .map_err(|e| {
                            MirrorError::new(format!("cannot read {}: {e}", path.display()))
                        })?;
                    let out = client
                        .upload_part()
                        .bucket(bucket)
                        .key(&key)
                        .upload_id(upload_id)
                        .part_number(n as i32)
                        .content_length(size as i64)
                        .body(body)
                        .customize()
                        .disable_payload_signing()
                        .send()
                        .await
                        .map_err(|e| errors.sdk(&format!("upload part {n}"), Some(&key), e))?;
                    Ok::<_, MirrorError>(
                        CompletedPart::builder()
                            .set_e_tag(out.e_tag().map(str::to_string))
                            .part_number(n as i32)
                            .build(),
                    )
                });
            }
            match set.join_next().await {
                None => break,
                Some(Ok(Ok(part))) => done.push(part),
                Some(Ok(Err(e))) => {
                    first_error.get_or_insert(e);
                }
                Some(Err(e)) => {
                    first_error.get_or_insert(MirrorError::new(format!("upload task failed: {e}")));
                }
            }
        }
        if let Some(e) = first_error {
            return Err(e);
        }
        done.sort_by_key(|p| p.part_number());
        Ok(done)
    }

    /// Best effort: a failed abort leaves parts the bucket's lifecycle rule
    /// (R2 default: 7 days) cleans up.
    pub(super) async fn abort(&self, key: &str, upload_id: &str) {
        let _ = self
            .client
            .abort_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(upload_id)
            .send()
            .await;
    }
}
