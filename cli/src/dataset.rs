//! Reads a MovieLens directory and hands the bytes to the portable parsers.
//!
//! Layout detection: `u.data` + `u.item` → ML-100K; `ratings.csv` + `movies.csv`
//! (+ optional `tags.csv`) → ml-latest / ml-25m. A directory that holds part of a
//! layout is reported with the missing file names.

use std::path::Path;

use anyhow::{bail, Context, Result};
use sona_core::data::{parse_ml100k, parse_ml_latest, DataError, Dataset};

/// Which MovieLens layout a directory holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    Ml100k,
    MlLatest,
}

/// Detects the layout of `dir`, or says which files are missing.
pub fn detect(dir: &Path) -> Result<Layout> {
    let has = |n: &str| dir.join(n).is_file();
    if !dir.is_dir() {
        bail!("{}: not a directory", dir.display());
    }
    if has("u.data") || has("u.item") {
        for f in ["u.data", "u.item"] {
            if !has(f) {
                return Err(DataError::MissingFile {
                    file: dir.join(f).display().to_string(),
                }
                .into());
            }
        }
        return Ok(Layout::Ml100k);
    }
    if has("ratings.csv") || has("movies.csv") {
        for f in ["ratings.csv", "movies.csv"] {
            if !has(f) {
                return Err(DataError::MissingFile {
                    file: dir.join(f).display().to_string(),
                }
                .into());
            }
        }
        return Ok(Layout::MlLatest);
    }
    bail!(
        "{}: no MovieLens files found (expected u.data + u.item, or ratings.csv + movies.csv [+ tags.csv])",
        dir.display()
    )
}

fn read_text(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
}

/// Loads the dataset in `dir` (either layout).
pub fn load_dir(dir: &Path) -> Result<Dataset> {
    let ds = match detect(dir)? {
        Layout::Ml100k => {
            let data = read_text(&dir.join("u.data"))?;
            let item = std::fs::read(dir.join("u.item"))
                .with_context(|| format!("reading {}", dir.join("u.item").display()))?;
            parse_ml100k(&data, &item)
        }
        Layout::MlLatest => {
            let ratings = read_text(&dir.join("ratings.csv"))?;
            let movies = read_text(&dir.join("movies.csv"))?;
            let tags_path = dir.join("tags.csv");
            let tags = if tags_path.is_file() {
                Some(read_text(&tags_path)?)
            } else {
                None
            };
            parse_ml_latest(&ratings, &movies, tags.as_deref())
        }
    };
    ds.with_context(|| format!("parsing {}", dir.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmpdir(name: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("sona-dataset-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn loads_ml100k_and_reports_missing_files() {
        let d = tmpdir("100k");
        std::fs::write(d.join("u.data"), "1\t1\t4\t100\n").unwrap();
        let err = load_dir(&d).unwrap_err().to_string();
        assert!(err.contains("u.item"), "{err}");
        std::fs::write(
            d.join("u.item"),
            b"1|Caf\xE9 (1995)|01-Jan-1995||u|0|0|0|0|0|0|0|0|1|0|0|0|0|0|0|0|0|0|0\n",
        )
        .unwrap();
        let ds = load_dir(&d).unwrap();
        assert_eq!(ds.items[0].title, "Café");
        assert_eq!(ds.interactions.len(), 1);
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn loads_ml_latest_with_optional_tags() {
        let d = tmpdir("latest");
        std::fs::write(
            d.join("movies.csv"),
            "movieId,title,genres\n5,\"Heat, The (1995)\",Crime\n",
        )
        .unwrap();
        let err = load_dir(&d).unwrap_err().to_string();
        assert!(err.contains("ratings.csv"), "{err}");
        std::fs::write(
            d.join("ratings.csv"),
            "userId,movieId,rating,timestamp\n9,5,3.5,7\n",
        )
        .unwrap();
        let ds = load_dir(&d).unwrap();
        assert!(ds.items[0].tags.is_empty());
        std::fs::write(
            d.join("tags.csv"),
            "userId,movieId,tag,timestamp\n9,5,Heist,8\n",
        )
        .unwrap();
        let ds = load_dir(&d).unwrap();
        assert_eq!(ds.items[0].tags, ["heist"]);
        std::fs::write(
            d.join("ratings.csv"),
            "userId,movieId,rating,timestamp\n9,6,3.5,7\n",
        )
        .unwrap();
        let err = format!("{:#}", load_dir(&d).unwrap_err());
        assert!(err.contains("ratings.csv:2"), "{err}");
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn empty_dir_is_an_error() {
        let d = tmpdir("empty");
        assert!(load_dir(&d).is_err());
        std::fs::remove_dir_all(&d).unwrap();
    }
}
