//! Which changed paths never trigger a run: jobpool's own state (`.jobpool/`), git's
//! folder, editors' temporary and swap files, jobpool's own temporary sink files, and
//! whatever `.gitignore` and `.ignore` files ignore (the `ignore` crate's matcher, the
//! nearest file deciding, up to the repository's root).

use std::collections::HashMap;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use ignore::gitignore::{Gitignore, GitignoreBuilder};

/// Whether a path is noise by its name alone: inside `.jobpool/` or `.git/`, or an
/// editor's temporary file (`x~`, `.x.swp`, `.#x`, `#x#`, vim's `4913`, JetBrains'
/// `___jb_tmp___`), or a sink's temporary file (`.x.tmp-XXXXXX`).
pub fn is_noise(path: &Path) -> bool {
    if path.components().any(|c| matches!(c.as_os_str().to_str(), Some(".jobpool" | ".git"))) {
        return true;
    }
    let Some(name) = path.file_name().and_then(OsStr::to_str) else { return false };
    name.ends_with('~')
        || [".swp", ".swo", ".swx", ".swpx", "___jb_tmp___", "___jb_old___"]
            .iter()
            .any(|s| name.ends_with(s))
        || name.starts_with(".#")
        || (name.starts_with('#') && name.ends_with('#') && name.len() > 1)
        || name == "4913"
        || name.starts_with(".goutputstream-")
        || (name.starts_with('.') && name.contains(".tmp-"))
}

/// One folder's `.gitignore` and `.ignore`, and whether it is a repository's root.
struct Folder {
    matcher: Option<Gitignore>,
    git_root: bool,
}

/// The ignore files of the folders seen so far.
#[derive(Default)]
pub struct Ignore {
    folders: HashMap<PathBuf, Folder>,
}

impl Ignore {
    /// No folder read yet.
    pub fn new() -> Ignore {
        Ignore::default()
    }

    /// Whether a change of `path` (absolute) never triggers a run.
    pub fn is_ignored(&mut self, path: &Path) -> bool {
        if is_noise(path) {
            return true;
        }
        let is_dir = path.is_dir();
        let mut dir = path.parent();
        while let Some(d) = dir {
            let folder = self.folder(d);
            if let Some(m) = &folder.matcher {
                let found = m.matched_path_or_any_parents(path, is_dir);
                if found.is_ignore() {
                    return true;
                }
                if found.is_whitelist() {
                    return false;
                }
            }
            if folder.git_root {
                break;
            }
            dir = d.parent();
        }
        false
    }

    /// `path` changed: when it is an ignore file, read its folder again next time.
    pub fn changed(&mut self, path: &Path) {
        if matches!(path.file_name().and_then(OsStr::to_str), Some(".gitignore" | ".ignore"))
            && let Some(d) = path.parent()
        {
            self.folders.remove(d);
        }
    }

    fn folder(&mut self, dir: &Path) -> &Folder {
        self.folders.entry(dir.to_path_buf()).or_insert_with(|| {
            let mut b = GitignoreBuilder::new(dir);
            let mut any = false;
            for name in [".gitignore", ".ignore"] {
                let f = dir.join(name);
                if f.is_file() {
                    any = true;
                    // A bad line is skipped, as git does.
                    let _ = b.add(f);
                }
            }
            let matcher = if any { b.build().ok() } else { None };
            Folder { matcher, git_root: dir.join(".git").exists() }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn noise_by_name() {
        for p in [
            "/r/.jobpool/runs/x/records.jsonl",
            "/r/.git/index",
            "/r/job.toml~",
            "/r/.job.toml.swp",
            "/r/.#job.toml",
            "/r/#job.toml#",
            "/r/4913",
            "/r/results/.out.csv.tmp-a1b2c3",
        ] {
            assert!(is_noise(Path::new(p)), "{p}");
        }
        for p in ["/r/job.toml", "/r/data/a.csv", "/r/.env", "/r/tmp-x", "/r/#"] {
            assert!(!is_noise(Path::new(p)), "{p}");
        }
    }

    #[test]
    fn gitignore_and_ignore_files_nearest_first() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir(root.join(".git")).unwrap();
        std::fs::create_dir_all(root.join("data/keep")).unwrap();
        std::fs::write(root.join(".gitignore"), "results/\n*.log\n").unwrap();
        std::fs::write(root.join("data/.ignore"), "*.bak\n!keep.log\n").unwrap();
        let mut ig = Ignore::new();
        assert!(ig.is_ignored(&root.join("results/out.csv")));
        assert!(ig.is_ignored(&root.join("x.log")));
        assert!(ig.is_ignored(&root.join("data/a.bak")));
        assert!(!ig.is_ignored(&root.join("data/keep.log")));
        assert!(!ig.is_ignored(&root.join("data/a.csv")));
        assert!(!ig.is_ignored(&root.join("job.toml")));
        // An edited ignore file is read again.
        std::fs::write(root.join(".gitignore"), "*.csv\n").unwrap();
        assert!(!ig.is_ignored(&root.join("data/a.csv")));
        ig.changed(&root.join(".gitignore"));
        assert!(ig.is_ignored(&root.join("data/a.csv")));
    }
}
