//! The paths of one job that watch mode watches, and why a changed path concerns it.
//!
//! A job depends on its file, its script `file`, its `lines` files, the files its globs
//! match (a new match counts, so the glob's base folder is watched) and the paths of its
//! `watch` list. Its own file sinks never concern it: a job does not retrigger itself.
//! Every path here is absolute and lexically normal, as the watcher reports them.

use std::path::{Component, Path, PathBuf};

use globset::{GlobBuilder, GlobMatcher};

use crate::model::{ArgForm, Job, ParamOrigin, SinkTarget, TaskTemplate, TemplatePart};

/// Why a changed path concerns a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Trigger {
    /// The job file itself.
    JobFile,
    /// The script `file` of a `script` task.
    Script,
    /// A `lines` file.
    Lines,
    /// A path a `glob` parameter matches (or now matches).
    Glob,
    /// A path of the job's `watch` list: every submission reruns.
    Watched,
}

impl Trigger {
    /// Whether a change of this kind reruns every submission (jobpool cannot know which
    /// read the path); otherwise only submissions whose key changed run.
    pub fn reruns_all(self) -> bool {
        self == Trigger::Watched
    }
}

/// A pattern relative to a job's folder, made absolute.
#[derive(Debug, Clone)]
struct Pattern {
    /// Matches the whole path; `None` for a literal path (no wildcard).
    glob: Option<GlobMatcher>,
    /// The literal path, or the folder before the first wildcard.
    base: PathBuf,
    /// Whether a match may lie deeper than one level below `base`.
    deep: bool,
}

impl Pattern {
    fn new(dir: &Path, pattern: &str) -> Pattern {
        let full = normalize(&dir.join(pattern));
        let wild = |s: &str| s.contains(['*', '?', '[', '{']);
        let mut base = PathBuf::new();
        let mut rest = Vec::new();
        for c in full.components() {
            let s = c.as_os_str().to_string_lossy();
            if rest.is_empty() && !wild(&s) {
                base.push(c);
            } else {
                rest.push(s.into_owned());
            }
        }
        if rest.is_empty() {
            return Pattern { glob: None, base: full, deep: true };
        }
        let text = format!(
            "{}/{}",
            globset::escape(&base.to_string_lossy()).trim_end_matches('/'),
            rest.join("/")
        );
        let glob = GlobBuilder::new(&text)
            .literal_separator(true)
            .build()
            .ok()
            .map(|g| g.compile_matcher());
        let deep = rest.len() > 1 || rest.iter().any(|r| r.contains("**"));
        Pattern { glob, base, deep }
    }

    fn matches(&self, path: &Path) -> bool {
        match &self.glob {
            Some(g) => g.is_match(path),
            // A literal path: the path itself, or anything under it (a folder).
            None => path.starts_with(&self.base),
        }
    }

    /// The folder to watch and whether recursively.
    fn watch_dir(&self) -> (PathBuf, bool) {
        match &self.glob {
            Some(_) => (self.base.clone(), self.deep),
            None if self.base.is_dir() => (self.base.clone(), true),
            None => (parent(&self.base), false),
        }
    }
}

/// What one job depends on.
#[derive(Debug, Clone)]
pub struct JobPaths {
    job_file: PathBuf,
    files: Vec<(PathBuf, Trigger)>,
    patterns: Vec<(Pattern, Trigger)>,
    outputs: Vec<Pattern>,
}

impl JobPaths {
    /// The paths of a valid job.
    pub fn of(job: &Job) -> JobPaths {
        let dir = absolute(&job.dir);
        let mut paths = JobPaths::of_file(&job.path);
        if let TaskTemplate::Script(s) = &job.task
            && let Some(f) = &s.file
        {
            paths.files.push((absolute(f), Trigger::Script));
        }
        let params = match &job.args.form {
            ArgForm::Product(p) | ArgForm::Zip(p) => p.as_slice(),
            _ => &[],
        };
        for p in params {
            match &p.origin {
                ParamOrigin::Inline => {}
                ParamOrigin::Lines { file } => paths.files.push((absolute(file), Trigger::Lines)),
                ParamOrigin::Glob { pattern, .. } => {
                    paths.patterns.push((Pattern::new(&dir, pattern), Trigger::Glob))
                }
            }
        }
        // `watch` first: a path both watched and matched reruns everything.
        for w in &job.watch {
            paths.patterns.insert(0, (Pattern::new(&dir, w), Trigger::Watched));
        }
        for sink in &job.sinks {
            if let SinkTarget::Path(t) = &sink.to {
                let text: String = t
                    .parts
                    .iter()
                    .map(|p| match p {
                        TemplatePart::Literal(s) => globset::escape(s),
                        TemplatePart::Placeholder(_) => "*".to_string(),
                    })
                    .collect();
                paths.outputs.push(Pattern::new(&dir, &text));
            }
        }
        paths
    }

    /// The paths of a job file that is not valid (yet): only the file itself.
    pub fn of_file(job_file: &Path) -> JobPaths {
        JobPaths {
            job_file: absolute(job_file),
            files: Vec::new(),
            patterns: Vec::new(),
            outputs: Vec::new(),
        }
    }

    /// The job file, absolute.
    pub fn job_file(&self) -> &Path {
        &self.job_file
    }

    /// Why a change of `path` (absolute) concerns this job, if it does.
    pub fn trigger(&self, path: &Path) -> Option<Trigger> {
        if path == self.job_file {
            return Some(Trigger::JobFile);
        }
        if self.outputs.iter().any(|o| o.matches(path)) {
            return None;
        }
        if let Some((_, t)) = self.files.iter().find(|(f, _)| f == path) {
            return Some(*t);
        }
        self.patterns.iter().find(|(p, _)| p.matches(path)).map(|(_, t)| *t)
    }

    /// The folders to watch and whether recursively. A folder that does not exist (yet)
    /// is replaced by its nearest existing ancestor, watched flat, so that its creation
    /// is seen (then the caller asks again).
    pub fn watch_dirs(&self) -> Vec<(PathBuf, bool)> {
        let mut out: Vec<(PathBuf, bool)> = Vec::new();
        let wanted = std::iter::once((parent(&self.job_file), false))
            .chain(self.files.iter().map(|(f, _)| (parent(f), false)))
            .chain(self.patterns.iter().map(|(p, _)| p.watch_dir()));
        for (dir, deep) in wanted {
            let mut d = dir.as_path();
            let mut deep = deep;
            while !d.is_dir() {
                deep = false;
                match d.parent() {
                    Some(p) => d = p,
                    None => break,
                }
            }
            if !out.iter().any(|(o, od)| o == d && *od == deep) {
                out.push((d.to_path_buf(), deep));
            }
        }
        out
    }
}

fn parent(p: &Path) -> PathBuf {
    p.parent().map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("/"))
}

/// `p` made absolute against the current folder, `.` and `..` resolved lexically (as
/// the watcher reports paths below the absolute folders it was given).
pub fn absolute(p: &Path) -> PathBuf {
    normalize(&std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf()))
}

fn normalize(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validate::{LoadOptions, load};

    #[test]
    fn triggers_and_folders_of_a_job() {
        let dir = tempfile::tempdir().unwrap();
        let root = absolute(dir.path());
        std::fs::create_dir_all(root.join("data/sub")).unwrap();
        std::fs::create_dir_all(root.join("tasks")).unwrap();
        std::fs::write(root.join("data/a.csv"), "1").unwrap();
        std::fs::write(root.join("inputs.txt"), "x\n").unwrap();
        std::fs::write(root.join("tasks/t.rhai"), "x").unwrap();
        let job_file = root.join("job.toml");
        std::fs::write(
            &job_file,
            "watch = [\"conf/*.yaml\", \"lib\"]\n\
             [task]\nkind = \"script\"\nfile = \"tasks/t.rhai\"\n\
             [args]\nf = { glob = \"data/*.csv\" }\nx = { lines = \"inputs.txt\" }\n\
             [[sink]]\nto = \"data/{name}-{run}.csv\"\nformat = \"csv\"\n",
        )
        .unwrap();
        let opts = LoadOptions { kinds: vec!["script".into()], ..Default::default() };
        let job = load(&job_file, &opts).unwrap();
        let paths = JobPaths::of(&job);
        let t = |rel: &str| paths.trigger(&root.join(rel));
        assert_eq!(t("job.toml"), Some(Trigger::JobFile));
        assert_eq!(t("tasks/t.rhai"), Some(Trigger::Script));
        assert_eq!(t("inputs.txt"), Some(Trigger::Lines));
        assert_eq!(t("data/a.csv"), Some(Trigger::Glob));
        assert_eq!(t("data/new.csv"), Some(Trigger::Glob));
        assert_eq!(t("data/sub/b.csv"), None);
        assert_eq!(t("data/a.txt"), None);
        // Its own sink does not retrigger it.
        assert_eq!(t("data/job-20260101T000000Z-abcd.csv"), None);
        assert_eq!(t("conf/x.yaml"), Some(Trigger::Watched));
        assert_eq!(t("lib/deep/m.py"), Some(Trigger::Watched));
        assert_eq!(t("other.toml"), None);
        let dirs = paths.watch_dirs();
        assert!(dirs.contains(&(root.clone(), false)), "{dirs:?}");
        assert!(dirs.contains(&(root.join("tasks"), false)), "{dirs:?}");
        assert!(dirs.contains(&(root.join("data"), false)), "{dirs:?}");
        // conf/ and lib/ do not exist: their parent is watched for their creation.
        assert!(!dirs.iter().any(|(d, _)| d.ends_with("conf") || d.ends_with("lib")));
        std::fs::create_dir(root.join("lib")).unwrap();
        assert!(paths.watch_dirs().contains(&(root.join("lib"), true)));
    }

    #[test]
    fn pattern_bases_and_depth() {
        let p = Pattern::new(Path::new("/r"), "data/**/*.csv");
        assert_eq!((p.base.as_path(), p.deep), (Path::new("/r/data"), true));
        assert!(p.matches(Path::new("/r/data/x/y/z.csv")));
        let p = Pattern::new(Path::new("/r/jobs"), "../in/*.txt");
        assert_eq!((p.base.as_path(), p.deep), (Path::new("/r/in"), false));
        assert!(p.matches(Path::new("/r/in/a.txt")));
        assert!(!p.matches(Path::new("/r/in/d/a.txt")));
    }
}
