//! Finding the YAML files named on the command line (files, or folders walked recursively).

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

/// A YAML file to read, and whether it was named explicitly (every document must then be a
/// plan) or found in a folder (documents of other tools are skipped).
#[derive(Debug, Clone)]
pub struct Input {
    pub path: PathBuf,
    pub explicit: bool,
}

/// Expand `paths` into YAML files, sorted, folders walked recursively (`.yaml`/`.yml`).
pub fn yaml_inputs(paths: &[PathBuf]) -> anyhow::Result<Vec<Input>> {
    let mut out = Vec::new();
    for p in paths {
        let meta = std::fs::metadata(p).with_context(|| format!("cannot read {}", p.display()))?;
        if meta.is_dir() {
            walk(p, &mut out).with_context(|| format!("cannot walk folder {}", p.display()))?;
        } else {
            out.push(Input {
                path: p.clone(),
                explicit: true,
            });
        }
    }
    if out.is_empty() {
        bail!(
            "no YAML files found in {}",
            paths
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    Ok(out)
}

fn walk(dir: &Path, out: &mut Vec<Input>) -> std::io::Result<()> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)?.collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let path = e.path();
        let ft = e.file_type()?;
        if ft.is_dir() {
            walk(&path, out)?;
        } else if ft.is_file()
            && matches!(
                path.extension().and_then(|x| x.to_str()),
                Some("yaml" | "yml")
            )
        {
            out.push(Input {
                path,
                explicit: false,
            });
        }
    }
    Ok(())
}
