//! `run.json`: the small state file of a run directory. It pins the settings a run was
//! started with (a rerun with other ones is refused) and records, per stage, whether it is
//! done and how much of the budget it used. Written atomically after every change, so a run
//! killed at any moment resumes from it.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::plan::{Budget, Stage};
use super::summary::EvalRow;
use crate::record::manifest::now_rfc3339;
use crate::record::write_atomic;
use crate::train::metrics::ValidMetrics;
use crate::{Error, Result};

/// Version of `run.json` this build writes and reads.
pub const RUN_SCHEMA: u32 = 1;
/// File name of the state file inside the run directory.
pub const RUN_FILE: &str = "run.json";

/// A file a run depends on, identified by content.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FileId {
    /// Path as given.
    pub path: PathBuf,
    /// sha256 of the contents.
    pub sha256: String,
}

impl FileId {
    fn show(&self) -> String {
        format!(
            "{} (sha256 {})",
            self.path.display(),
            &self.sha256[..12.min(self.sha256.len())]
        )
    }
}

/// Everything that shapes a run's results. A rerun into the same directory must match.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunSettings {
    /// Teacher GGUF.
    pub teacher: FileId,
    /// Training prompt files.
    pub prompts: Vec<FileId>,
    /// Held-out prompt files.
    pub valid_prompts: Vec<FileId>,
    /// Budget and its split.
    pub budget: Budget,
    /// Most training prompts recorded (`None`: as many as the budget allows).
    pub train_prompts_limit: Option<usize>,
    /// Answers the teacher samples per training prompt (run files from before the option
    /// recorded one).
    #[serde(default = "one")]
    pub answers: usize,
    /// Held-out prompts recorded.
    pub valid_prompts_limit: usize,
    /// Longest teacher answer, tokens.
    pub max_new_tokens: usize,
    /// Teacher blocks the student starts from; empty for a random student (a teacher whose
    /// blocks the student cannot copy).
    pub layers: Vec<usize>,
    /// How the student starts, in words (teacher blocks, or random and why).
    #[serde(default)]
    pub student_init: String,
    /// The student's shape when it is cut from the teacher (`None`: random, or a run file
    /// from before pruning, whose student kept `layers` at full width).
    #[serde(default)]
    pub shape: Option<crate::student::shape::Shape>,
    /// Whether training lets positions attend across the sequences packed into a window
    /// (run files from before the option did).
    #[serde(default = "crate::yes")]
    pub cross_attention: bool,
    /// generate (the teacher answers) or score (given responses, raw text).
    #[serde(default)]
    pub mode: crate::record::Mode,
    /// Peak learning rate.
    pub lr: f64,
    /// Weight of hard-label cross-entropy in the loss (run files from before the option
    /// trained with 0.5).
    #[serde(default = "half")]
    pub alpha: f32,
    /// Whether the embeddings and output projection stay the teacher's (run files from
    /// before the option trained them).
    #[serde(default)]
    pub freeze_embeddings: bool,
    /// Share of the steps trained on-policy at the end (run files from before the option
    /// had none).
    #[serde(default)]
    pub on_policy: f64,
    /// Windows per optimizer step.
    pub batch: usize,
    /// Tokens per window.
    pub seq_len: usize,
    /// Fixed step count (`None`: planned from the budget).
    pub train_steps: Option<usize>,
    /// Seed of recording, initialisation and data order.
    pub seed: u64,
    /// Whether eval times the models.
    pub speed: bool,
}

fn half() -> f32 {
    0.5
}

fn one() -> usize {
    1
}

impl RunSettings {
    /// The differences to `now`, each naming its option, old and new value.
    pub fn differences(&self, now: &Self) -> Vec<String> {
        // Files count as equal when their contents are, wherever they are.
        let files = |xs: &[FileId]| xs.iter().map(FileId::show).collect::<Vec<_>>().join(", ");
        let shas = |xs: &[FileId]| xs.iter().map(|x| x.sha256.clone()).collect::<Vec<_>>();
        let mut out = Vec::new();
        if self.teacher.sha256 != now.teacher.sha256 {
            out.push(("--teacher", self.teacher.show(), now.teacher.show()));
        }
        if shas(&self.prompts) != shas(&now.prompts) {
            out.push(("--prompts", files(&self.prompts), files(&now.prompts)));
        }
        if shas(&self.valid_prompts) != shas(&now.valid_prompts) {
            let (was, is) = (files(&self.valid_prompts), files(&now.valid_prompts));
            out.push(("--valid-prompts", was, is));
        }
        for ((flag, was), (_, is)) in self.options().into_iter().zip(now.options()) {
            if was != is {
                out.push((flag, was, is));
            }
        }
        out.into_iter()
            .map(|(flag, was, is)| format!("{flag} was '{was}', now '{is}'"))
            .collect()
    }

    /// Every option other than the files, as its flag and value.
    fn options(&self) -> Vec<(&'static str, String)> {
        let or = |x: Option<usize>, none: &str| x.map_or(none.to_string(), |n| n.to_string());
        let list = |xs: Vec<String>| xs.join(",");
        vec![
            ("--minutes", self.budget.minutes.to_string()),
            (
                "--split",
                list(self.budget.split.map(|x| x.to_string()).to_vec()),
            ),
            ("--train-prompts-limit", or(self.train_prompts_limit, "all")),
            ("--answers-per-prompt", self.answers.to_string()),
            (
                "--valid-prompts-limit",
                self.valid_prompts_limit.to_string(),
            ),
            ("--max-new-tokens", self.max_new_tokens.to_string()),
            (
                "--layers",
                list(self.layers.iter().map(usize::to_string).collect()),
            ),
            (
                "--shape",
                self.shape
                    .as_ref()
                    .map_or("blocks".into(), |s| s.describe()),
            ),
            ("--mode", format!("{:?}", self.mode).to_lowercase()),
            ("--lr", self.lr.to_string()),
            ("--alpha", self.alpha.to_string()),
            ("--train-embeddings", (!self.freeze_embeddings).to_string()),
            ("--on-policy", self.on_policy.to_string()),
            ("--batch", self.batch.to_string()),
            ("--seq-len", self.seq_len.to_string()),
            ("--train-steps", or(self.train_steps, "auto")),
            ("--seed", self.seed.to_string()),
            ("--no-speed", (!self.speed).to_string()),
        ]
    }
}

/// Where a stage stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Not started.
    #[default]
    Pending,
    /// Started, not finished (stopped, killed, or running now).
    Started,
    /// Finished; a rerun skips it.
    Done,
}

/// One stage's record in `run.json`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StageState {
    /// Where it stands.
    pub status: Status,
    /// Wall seconds spent in it over all runs (up to its last commit).
    pub seconds: f64,
    /// Tokens it processed (record stages).
    pub tokens: usize,
    /// One line for the stage list and the summary.
    pub summary: String,
}

/// The state of a run directory.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunState {
    /// Format version.
    pub schema_version: u32,
    /// Settings it was started with.
    pub settings: RunSettings,
    /// Per stage, in [`Stage::ALL`] order.
    pub stages: Vec<StageState>,
    /// Optimizer steps, fixed when training first starts.
    pub train_steps: Option<usize>,
    /// The student's last validation figures.
    pub valid: Option<ValidMetrics>,
    /// The eval table.
    pub eval: Vec<EvalRow>,
    /// Created (RFC 3339).
    pub created: String,
    /// Last written (RFC 3339).
    pub updated: String,
}

impl RunState {
    /// Open the run in `dir` for `settings`: a fresh state for a new directory, the saved
    /// one for a run started with the same settings.
    ///
    /// # Errors
    /// [`Error::Invalid`] when `dir` holds a run of other settings (naming each difference
    /// and how to fix it), or holds files but no `run.json`; [`Error::Json`] when damaged.
    pub fn open(dir: &Path, settings: RunSettings) -> Result<Self> {
        let path = dir.join(RUN_FILE);
        match std::fs::read(&path) {
            Ok(bytes) => {
                let state = Self::parse(&path, &bytes)?;
                let diffs = state.settings.differences(&settings);
                if !diffs.is_empty() {
                    return Err(Error::Invalid(format!(
                        "'{}' holds a run started with other settings: {}. Rerun with the original options to resume it, or pick another --out (or delete '{}') to start afresh",
                        dir.display(),
                        diffs.join("; "),
                        dir.display()
                    )));
                }
                Ok(state)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                // The lock file and the dashboard's log are there before the first save.
                let used = std::fs::read_dir(dir).is_ok_and(|d| {
                    d.flatten().any(|e| {
                        let name = e.file_name();
                        name != crate::lock::LOCK_FILE && name != "run.log"
                    })
                });
                if used {
                    return Err(Error::Invalid(format!(
                        "'{}' is not empty and holds no {RUN_FILE}: pick a new or empty --out directory",
                        dir.display()
                    )));
                }
                let now = now_rfc3339();
                Ok(RunState {
                    schema_version: RUN_SCHEMA,
                    settings,
                    stages: vec![StageState::default(); Stage::ALL.len()],
                    train_steps: None,
                    valid: None,
                    eval: Vec::new(),
                    created: now.clone(),
                    updated: now,
                })
            }
            Err(e) => Err(Error::io(path, e)),
        }
    }

    /// Parse and check the state file at `path`: its schema version, its fields, one entry
    /// per stage.
    ///
    /// # Errors
    /// [`Error::Invalid`] naming the file, what is wrong, and what to do.
    fn parse(path: &Path, bytes: &[u8]) -> Result<Self> {
        let dir = path.parent().unwrap_or(Path::new("."));
        let refuse = |what: String| {
            Error::Invalid(format!(
                "'{}' {what}; restore it from a backup, or pick another --out (or delete '{}') to start the run afresh",
                path.display(),
                dir.display()
            ))
        };
        let value: serde_json::Value = serde_json::from_slice(bytes)
            .map_err(|e| refuse(format!("is not valid JSON ({e})")))?;
        let version = value
            .get("schema_version")
            .and_then(serde_json::Value::as_u64);
        if version != Some(u64::from(RUN_SCHEMA)) {
            return Err(refuse(format!(
                "has schema_version {}, this build reads {RUN_SCHEMA}",
                version.map_or("(none)".into(), |v| v.to_string())
            )));
        }
        let state: Self = serde_json::from_value(value)
            .map_err(|e| refuse(format!("does not match the run file format ({e})")))?;
        if state.stages.len() != Stage::ALL.len() {
            return Err(refuse(format!(
                "lists {} stages, a run has {}",
                state.stages.len(),
                Stage::ALL.len()
            )));
        }
        Ok(state)
    }

    /// Write `dir/run.json` atomically.
    ///
    /// # Errors
    /// [`Error::Io`].
    pub fn save(&mut self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        self.updated = now_rfc3339();
        let mut bytes = serde_json::to_vec_pretty(self)?;
        bytes.push(b'\n');
        write_atomic(&dir.join(RUN_FILE), &bytes)
    }

    /// The record of `stage`.
    pub fn stage(&self, stage: Stage) -> &StageState {
        &self.stages[stage.index()]
    }

    /// The record of `stage`, to change.
    pub fn stage_mut(&mut self, stage: Stage) -> &mut StageState {
        &mut self.stages[stage.index()]
    }

    /// Whether every stage is done.
    pub fn is_complete(&self) -> bool {
        self.stages.iter().all(|s| s.status == Status::Done)
    }

    /// Teacher recording speed over both record stages, tokens/s.
    pub fn record_tok_s(&self) -> Option<f64> {
        let (tokens, secs) = [Stage::RecordValid, Stage::RecordTrain]
            .iter()
            .map(|&s| self.stage(s))
            .fold((0usize, 0.0), |(t, s), x| (t + x.tokens, s + x.seconds));
        (tokens > 0 && secs > 0.0).then(|| tokens as f64 / secs)
    }

    /// Seconds of the record share still unspent.
    pub fn record_seconds_left(&self) -> f64 {
        let spent = self.stage(Stage::RecordValid).seconds + self.stage(Stage::RecordTrain).seconds;
        (self.settings.budget.record_seconds() - spent).max(0.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::plan::DEFAULT_SPLIT;

    fn settings() -> RunSettings {
        let id = |p: &str, sha: &str| FileId {
            path: p.into(),
            sha256: sha.into(),
        };
        RunSettings {
            teacher: id("t.gguf", "aaaa"),
            prompts: vec![id("p.jsonl", "bbbb")],
            valid_prompts: vec![id("v.jsonl", "cccc")],
            budget: Budget::new(20.0, DEFAULT_SPLIT).expect("budget"),
            train_prompts_limit: None,
            answers: 1,
            valid_prompts_limit: 16,
            max_new_tokens: 256,
            layers: vec![0, 29],
            student_init: String::new(),
            shape: None,
            cross_attention: false,
            mode: crate::record::Mode::Generate,
            lr: 3e-4,
            alpha: 0.0,
            freeze_embeddings: true,
            on_policy: 0.0,
            batch: 4,
            seq_len: 256,
            train_steps: None,
            seed: 42,
            speed: true,
        }
    }

    #[test]
    fn a_run_reopens_with_its_settings_and_refuses_others() {
        let dir = std::env::temp_dir().join(format!("distill-run-state-{}", std::process::id()));
        std::fs::remove_dir_all(&dir).ok();
        let mut st = RunState::open(&dir, settings()).expect("fresh");
        st.stage_mut(Stage::RecordValid).status = Status::Done;
        st.save(&dir).expect("save");
        let mut moved = settings();
        moved.teacher.path = "elsewhere/t.gguf".into();
        let again = RunState::open(&dir, moved).expect("same contents elsewhere");
        assert_eq!(again.stage(Stage::RecordValid).status, Status::Done);
        let mut other = settings();
        other.budget.minutes = 5.0;
        other.teacher.sha256 = "dddd".into();
        let err = RunState::open(&dir, other)
            .expect_err("other settings")
            .to_string();
        assert!(err.contains("--minutes was '20', now '5'"), "{err}");
        assert!(
            err.contains("--teacher was 't.gguf (sha256 aaaa)'"),
            "{err}"
        );
        assert!(err.contains("pick another --out"), "{err}");
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn run_files_from_before_the_loss_options_read_as_what_they_trained() {
        let mut old = serde_json::to_value(settings()).expect("json");
        let map = old.as_object_mut().expect("object");
        map.remove("alpha");
        map.remove("freeze_embeddings");
        let read: RunSettings = serde_json::from_value(old).expect("old settings");
        assert_eq!((read.alpha, read.freeze_embeddings), (0.5, false));
        let diff = read.differences(&settings());
        assert!(
            diff.contains(&"--alpha was '0.5', now '0'".to_string()),
            "{diff:?}"
        );
        assert!(
            diff.contains(&"--train-embeddings was 'true', now 'false'".to_string()),
            "{diff:?}"
        );
    }

    #[test]
    fn the_record_rate_and_share_come_from_both_record_stages() {
        let mut st = RunState {
            schema_version: RUN_SCHEMA,
            settings: settings(),
            stages: vec![StageState::default(); 4],
            train_steps: None,
            valid: None,
            eval: Vec::new(),
            created: String::new(),
            updated: String::new(),
        };
        assert_eq!(st.record_tok_s(), None);
        *st.stage_mut(Stage::RecordValid) = StageState {
            seconds: 20.0,
            tokens: 2000,
            ..Default::default()
        };
        *st.stage_mut(Stage::RecordTrain) = StageState {
            seconds: 80.0,
            tokens: 10000,
            ..Default::default()
        };
        assert_eq!(st.record_tok_s(), Some(120.0));
        assert!(
            (st.record_seconds_left() - 500.0).abs() < 1e-9,
            "600 s share less 100 s spent"
        );
    }

    #[test]
    fn a_damaged_run_file_is_refused_naming_the_file_and_the_fix() {
        let dir = std::env::temp_dir().join(format!("distill-run-bad-{}", std::process::id()));
        std::fs::remove_dir_all(&dir).ok();
        let mut st = RunState::open(&dir, settings()).expect("fresh");
        st.save(&dir).expect("save");
        let good: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.join(RUN_FILE)).expect("read"))
                .expect("json");
        let cases = [
            ("stages", serde_json::json!([]), "lists 0 stages, a run has"),
            ("schema_version", serde_json::json!(7), "schema_version 7"),
            ("settings", serde_json::json!(1), "does not match"),
        ];
        for (field, value, says) in cases {
            let mut bad = good.clone();
            bad[field] = value;
            std::fs::write(dir.join(RUN_FILE), bad.to_string()).expect("write");
            let err = RunState::open(&dir, settings())
                .expect_err(field)
                .to_string();
            assert!(
                err.contains(says)
                    && err.contains(&dir.join(RUN_FILE).display().to_string())
                    && err.contains("pick another --out"),
                "{err}"
            );
        }
        std::fs::write(dir.join(RUN_FILE), "{").expect("write");
        let err = RunState::open(&dir, settings()).expect_err("truncated");
        assert!(err.to_string().contains("not valid JSON"), "{err}");
        std::fs::remove_dir_all(&dir).ok();
    }
}
