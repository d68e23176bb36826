//! `[slurm]`: the settings of `backend = "slurm"`.
//! Must not: talk to Slurm.

use std::path::PathBuf;

use super::read::{Ctx, non_empty, string_list, table_or_error};
use crate::model::SlurmConfig;
use crate::source::Node;
use crate::spec::keys;

pub(super) fn slurm(ctx: &mut Ctx, node: &Node) -> Option<SlurmConfig> {
    let t = table_or_error(ctx, "slurm", node, "write a `[slurm]` table")?;
    ctx.check_keys(t, keys::SLURM, "`[slurm]`");
    let mut s = SlurmConfig::default();
    if let Some(n) = node.get("partition") {
        s.partition = non_empty(ctx, "partition", n, "partition = \"batch\"");
    }
    if let Some(n) = node.get("array-limit") {
        s.array_limit =
            ctx.bounded("array-limit", n, 1, u32::MAX as i64, "array-limit = 50").map(|v| v as u32);
    }
    if let Some(n) = node.get("per-element") {
        s.per_element =
            ctx.bounded("per-element", n, 1, i64::MAX, "per-element = 1000").map(|v| v as u64);
    }
    if let Some(n) = node.get("time-limit") {
        s.time_limit = ctx.duration("time-limit", n);
    }
    if let Some(n) = node.get("sbatch-args") {
        s.sbatch_args =
            string_list(ctx, "sbatch-args", n, "sbatch-args = [\"--mem=4G\"]").unwrap_or_default();
    }
    if let Some(n) = node.get("shared-dir") {
        s.shared_dir = non_empty(ctx, "shared-dir", n, "shared-dir = \"/scratch/me/jobpool\"")
            .map(PathBuf::from);
    }
    Some(s)
}
