//! Pulled components and manifests, kept on disk by digest: a pod that restarts on a version it
//! already pulled needs no registry, and every read is checked against its digest again.

use std::path::{Path, PathBuf};

use crate::service::digest_of;

/// Blobs (components and their manifests) kept: about 8 releases.
pub const KEPT_BLOBS: usize = 16;

/// A folder of blobs named by digest (`sha256/<hex>`).
#[derive(Debug, Clone)]
pub struct Cache {
    dir: PathBuf,
}

impl Cache {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `None` for a digest that is not `sha256:` and 64 hex digits, so nothing outside the
    /// folder is ever named.
    fn path(&self, digest: &str) -> Option<PathBuf> {
        let hex = digest.strip_prefix("sha256:")?;
        let valid = hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        valid.then(|| self.dir.join("sha256").join(hex))
    }

    /// The blob with `digest`, if it is cached and still hashes to it (a damaged one is removed).
    pub async fn get(&self, digest: &str) -> Option<Vec<u8>> {
        let path = self.path(digest)?;
        let bytes = tokio::fs::read(&path).await.ok()?;
        if digest_of(&bytes) == digest {
            return Some(bytes);
        }
        tracing::warn!(path = %path.display(), "a cached blob does not match its digest; removing it");
        let _ = tokio::fs::remove_file(&path).await;
        None
    }

    /// Stores `bytes` (already checked against `digest`) atomically: written aside, then renamed.
    pub async fn put(&self, digest: &str, bytes: &[u8]) -> std::io::Result<()> {
        let Some(path) = self.path(digest) else {
            return Err(std::io::Error::other(format!("not a sha256 digest: {digest}")));
        };
        let folder = self.dir.join("sha256");
        tokio::fs::create_dir_all(&folder).await?;
        let temporary = folder.join(format!(".{}.partial", uuid::Uuid::new_v4().simple()));
        tokio::fs::write(&temporary, bytes).await?;
        tokio::fs::rename(&temporary, &path).await?;
        self.prune(&path).await;
        Ok(())
    }

    /// Where blobs being pulled are written, so that keeping one is a rename.
    pub fn partial_dir(&self) -> PathBuf {
        self.dir.join("sha256")
    }

    /// Keeps `partial` (already checked against `digest`) as that blob.
    pub async fn keep(&self, digest: &str, mut partial: Partial) -> std::io::Result<()> {
        let Some(path) = self.path(digest) else {
            return Err(std::io::Error::other(format!("not a sha256 digest: {digest}")));
        };
        partial.file.sync_all().await?;
        tokio::fs::rename(&partial.path, &path).await?;
        partial.kept = true;
        self.prune(&path).await;
        Ok(())
    }

    /// Keeps the folder bounded (it is a size-limited volume in a pod): past [`KEPT_BLOBS`],
    /// the oldest blobs go, never `keep`. A pruned blob costs a pull if it is asked for again.
    async fn prune(&self, keep: &Path) {
        let Ok(mut entries) = tokio::fs::read_dir(self.dir.join("sha256")).await else { return };
        let mut blobs = Vec::new();
        while let Ok(Some(entry)) = entries.next_entry().await {
            // A pull still being written is not a blob yet.
            if entry.file_name().to_string_lossy().starts_with('.') {
                continue;
            }
            let modified = entry.metadata().await.and_then(|m| m.modified()).ok();
            blobs.push((modified, entry.path()));
        }
        if blobs.len() <= KEPT_BLOBS {
            return;
        }
        blobs.sort();
        let excess = blobs.len() - KEPT_BLOBS;
        for (_, path) in blobs.into_iter().filter(|(_, path)| path != keep).take(excess) {
            let _ = tokio::fs::remove_file(path).await;
        }
    }
}

/// A blob being pulled, in a file of its own: removed when dropped unless it was kept, so a
/// refused or cancelled pull leaves nothing behind.
pub struct Partial {
    path: PathBuf,
    file: tokio::fs::File,
    kept: bool,
}

impl Partial {
    /// A new file in `folder` (created if need be).
    pub async fn create(folder: &Path) -> std::io::Result<Self> {
        tokio::fs::create_dir_all(folder).await?;
        let path = folder.join(format!(".{}.partial", uuid::Uuid::new_v4().simple()));
        let file = tokio::fs::OpenOptions::new().read(true).write(true).create_new(true).open(&path).await?;
        Ok(Self { path, file, kept: false })
    }

    pub fn file(&mut self) -> &mut tokio::fs::File {
        &mut self.file
    }

    /// Everything written, read back.
    pub async fn read(&mut self) -> std::io::Result<Vec<u8>> {
        tokio::fs::read(&self.path).await
    }
}

impl Drop for Partial {
    fn drop(&mut self) {
        if !self.kept {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn blobs_come_back_only_while_they_match_their_digest() {
        let dir = std::env::temp_dir().join(format!("skiff-cache-{}", uuid::Uuid::new_v4().simple()));
        let cache = Cache::new(&dir);
        let digest = digest_of(b"component");
        assert_eq!(cache.get(&digest).await, None);
        cache.put(&digest, b"component").await.unwrap();
        assert_eq!(cache.get(&digest).await.as_deref(), Some(&b"component"[..]));
        std::fs::write(cache.path(&digest).unwrap(), b"tampered").unwrap();
        assert_eq!(cache.get(&digest).await, None, "a damaged blob is not served");
        assert!(cache.get("sha256:../../etc/passwd").await.is_none());
        let _ = std::fs::remove_dir_all(dir);
    }
}
