//! MovieLens parsers (ML-100K and the ml-latest / 25M CSV layout).

use std::collections::HashMap;

use super::csv::split_line;
use super::{synthetic_platforms, DataError, Dataset, Interaction, Item};

/// `u.genre` order of the 19 genre flags in `u.item`.
pub const ML100K_GENRES: [&str; 19] = [
    "unknown",
    "Action",
    "Adventure",
    "Animation",
    "Children's",
    "Comedy",
    "Crime",
    "Documentary",
    "Drama",
    "Fantasy",
    "Film-Noir",
    "Horror",
    "Musical",
    "Mystery",
    "Romance",
    "Sci-Fi",
    "Thriller",
    "War",
    "Western",
];

/// Decodes ISO-8859-1 bytes: every byte is the code point of the same value.
pub fn latin1_to_string(bytes: &[u8]) -> String {
    bytes.iter().map(|&b| b as char).collect()
}

fn malformed(file: &str, line: usize, reason: impl Into<String>) -> DataError {
    DataError::Malformed {
        file: file.to_string(),
        line,
        reason: reason.into(),
    }
}

/// Non-empty lines with their 1-based numbers, `\r` stripped.
fn lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.trim_end_matches('\r')))
        .filter(|(_, l)| !l.trim().is_empty())
}

/// "Toy Story (1995)" → ("Toy Story", Some(1995)). A title without a trailing
/// four-digit year in parentheses is returned whole with `None`.
fn split_title_year(raw: &str) -> (String, Option<u16>) {
    let t = raw.trim();
    if let Some(body) = t.strip_suffix(')') {
        if let Some(open) = body.rfind('(') {
            let inner = &body[open + 1..];
            if inner.len() == 4 && inner.bytes().all(|b| b.is_ascii_digit()) {
                if let Ok(y) = inner.parse::<u16>() {
                    return (body[..open].trim_end().to_string(), Some(y));
                }
            }
        }
    }
    (t.to_string(), None)
}

/// "01-Jan-1995" → "1995-01-01".
fn ml100k_date(s: &str) -> Option<String> {
    let mut parts = s.split('-');
    let (d, m, y) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let day: u32 = d.parse().ok()?;
    let year: u32 = y.parse().ok()?;
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let month = MONTHS.iter().position(|&x| x == m)? + 1;
    if !(1..=31).contains(&day) || y.len() != 4 {
        return None;
    }
    Some(format!("{year:04}-{month:02}-{day:02}"))
}

fn parse_rating(file: &str, line: usize, s: &str, min: f32, max: f32) -> Result<f32, DataError> {
    match s.trim().parse::<f32>() {
        Ok(r) if r.is_finite() && (min..=max).contains(&r) => Ok(r),
        _ => Err(DataError::BadRating {
            file: file.to_string(),
            line,
            value: s.to_string(),
            min,
            max,
        }),
    }
}

fn parse_u64(file: &str, line: usize, what: &str, s: &str) -> Result<u64, DataError> {
    s.trim().parse::<u64>().map_err(|_| {
        malformed(
            file,
            line,
            format!("{what} {s:?} is not a non-negative integer"),
        )
    })
}

fn parse_i64(file: &str, line: usize, what: &str, s: &str) -> Result<i64, DataError> {
    s.trim()
        .parse::<i64>()
        .map_err(|_| malformed(file, line, format!("{what} {s:?} is not an integer")))
}

/// Raw rating rows (source ids) → dataset with dense users sorted by source id.
fn assemble(
    items: Vec<Item>,
    rows: Vec<(u64, u32, f32, i64)>,
    ratings_file: &str,
) -> Result<Dataset, DataError> {
    if rows.is_empty() {
        return Err(DataError::Empty {
            file: ratings_file.to_string(),
        });
    }
    let mut users: Vec<u64> = rows.iter().map(|r| r.0).collect();
    users.sort_unstable();
    users.dedup();
    let index: HashMap<u64, u32> = users
        .iter()
        .enumerate()
        .map(|(i, &u)| (u, i as u32))
        .collect();
    let interactions = rows
        .into_iter()
        .map(|(u, item, rating, timestamp)| Interaction {
            user: index[&u],
            item,
            rating,
            timestamp,
        })
        .collect();
    Ok(Dataset {
        items,
        user_source_ids: users,
        interactions,
    })
}

/// Parses MovieLens 100K: `u_data` (tab-separated `user item rating timestamp`,
/// ratings 1–5) and `u_item` (latin-1 bytes, `|`-separated, 19 genre flags in
/// [`ML100K_GENRES`] order; the "unknown" flag yields no genre).
pub fn parse_ml100k(u_data: &str, u_item: &[u8]) -> Result<Dataset, DataError> {
    const ITEM: &str = "u.item";
    const DATA: &str = "u.data";
    let item_text = latin1_to_string(u_item);
    let mut items: Vec<Item> = Vec::new();
    let mut by_source: HashMap<u64, u32> = HashMap::new();
    for (ln, line) in lines(&item_text) {
        let f: Vec<&str> = line.split('|').collect();
        if f.len() != 5 + ML100K_GENRES.len() {
            return Err(malformed(
                ITEM,
                ln,
                format!("expected 24 '|'-separated fields, found {}", f.len()),
            ));
        }
        let source_id = parse_u64(ITEM, ln, "item id", f[0])?;
        let (title, mut year) = split_title_year(f[1]);
        let release_date = if f[2].trim().is_empty() {
            None
        } else {
            Some(ml100k_date(f[2].trim()).ok_or_else(|| {
                malformed(
                    ITEM,
                    ln,
                    format!("release date {:?} is not DD-Mon-YYYY", f[2]),
                )
            })?)
        };
        if year.is_none() {
            year = release_date.as_ref().and_then(|d| d[..4].parse().ok());
        }
        let mut genres = Vec::new();
        for (g, flag) in ML100K_GENRES.iter().zip(&f[5..]) {
            match flag.trim() {
                "1" => {
                    if *g != "unknown" {
                        genres.push(g.to_string());
                    }
                }
                "0" => {}
                other => {
                    return Err(malformed(
                        ITEM,
                        ln,
                        format!("genre flag {other:?} for {g} is not 0 or 1"),
                    ))
                }
            }
        }
        let id = items.len() as u32;
        if by_source.insert(source_id, id).is_some() {
            return Err(DataError::DuplicateItem {
                file: ITEM.to_string(),
                line: ln,
                item_id: source_id,
            });
        }
        items.push(Item {
            id,
            source_id,
            title,
            year,
            release_date,
            genres,
            tags: Vec::new(),
            platforms: synthetic_platforms(source_id),
        });
    }
    if items.is_empty() {
        return Err(DataError::Empty {
            file: ITEM.to_string(),
        });
    }
    let mut rows = Vec::new();
    for (ln, line) in lines(u_data) {
        let f: Vec<&str> = line.split('\t').collect();
        if f.len() != 4 {
            return Err(malformed(
                DATA,
                ln,
                format!("expected 4 tab-separated fields, found {}", f.len()),
            ));
        }
        let user = parse_u64(DATA, ln, "user id", f[0])?;
        let item_src = parse_u64(DATA, ln, "item id", f[1])?;
        let item = *by_source.get(&item_src).ok_or(DataError::UnknownItem {
            file: DATA.to_string(),
            line: ln,
            item_id: item_src,
        })?;
        let rating = parse_rating(DATA, ln, f[2], 1.0, 5.0)?;
        let ts = parse_i64(DATA, ln, "timestamp", f[3])?;
        rows.push((user, item, rating, ts));
    }
    assemble(items, rows, DATA)
}

fn check_header(file: &str, text: &str, expected: &str) -> Result<(), DataError> {
    let first = text
        .lines()
        .next()
        .map(|l| l.trim_start_matches('\u{feff}').trim_end_matches('\r'))
        .unwrap_or("");
    if first.trim() != expected {
        return Err(malformed(
            file,
            1,
            format!("expected header {expected:?}, found {first:?}"),
        ));
    }
    Ok(())
}

fn csv_fields(file: &str, ln: usize, line: &str, n: usize) -> Result<Vec<String>, DataError> {
    let f = split_line(line).map_err(|e| malformed(file, ln, e))?;
    if f.len() != n {
        return Err(malformed(
            file,
            ln,
            format!("expected {n} comma-separated fields, found {}", f.len()),
        ));
    }
    Ok(f)
}

/// Parses the ml-latest / ml-25m CSV layout. `movies.csv` (`movieId,title,genres`,
/// quoted titles, genres `A|B`, "(no genres listed)" → none), `ratings.csv`
/// (`userId,movieId,rating,timestamp`, ratings 0.5–5) and optional `tags.csv`
/// (`userId,movieId,tag,timestamp`; tags are trimmed, lowercased, deduplicated and
/// attached to the item; they create no interactions).
pub fn parse_ml_latest(
    ratings_csv: &str,
    movies_csv: &str,
    tags_csv: Option<&str>,
) -> Result<Dataset, DataError> {
    const MOVIES: &str = "movies.csv";
    const RATINGS: &str = "ratings.csv";
    const TAGS: &str = "tags.csv";
    check_header(MOVIES, movies_csv, "movieId,title,genres")?;
    let mut items: Vec<Item> = Vec::new();
    let mut by_source: HashMap<u64, u32> = HashMap::new();
    for (ln, line) in lines(movies_csv).skip_while(|(ln, _)| *ln == 1) {
        let f = csv_fields(MOVIES, ln, line, 3)?;
        let source_id = parse_u64(MOVIES, ln, "movieId", &f[0])?;
        let (title, year) = split_title_year(&f[1]);
        let genres: Vec<String> = if f[2].trim() == "(no genres listed)" || f[2].trim().is_empty() {
            Vec::new()
        } else {
            f[2].split('|').map(|g| g.trim().to_string()).collect()
        };
        let id = items.len() as u32;
        if by_source.insert(source_id, id).is_some() {
            return Err(DataError::DuplicateItem {
                file: MOVIES.to_string(),
                line: ln,
                item_id: source_id,
            });
        }
        items.push(Item {
            id,
            source_id,
            title,
            year,
            release_date: None,
            genres,
            tags: Vec::new(),
            platforms: synthetic_platforms(source_id),
        });
    }
    if items.is_empty() {
        return Err(DataError::Empty {
            file: MOVIES.to_string(),
        });
    }
    let lookup = |file: &str, ln: usize, s: &str| -> Result<u32, DataError> {
        let src = parse_u64(file, ln, "movieId", s)?;
        by_source.get(&src).copied().ok_or(DataError::UnknownItem {
            file: file.to_string(),
            line: ln,
            item_id: src,
        })
    };
    check_header(RATINGS, ratings_csv, "userId,movieId,rating,timestamp")?;
    let mut rows = Vec::new();
    for (ln, line) in lines(ratings_csv).skip_while(|(ln, _)| *ln == 1) {
        let f = csv_fields(RATINGS, ln, line, 4)?;
        let user = parse_u64(RATINGS, ln, "userId", &f[0])?;
        let item = lookup(RATINGS, ln, &f[1])?;
        let rating = parse_rating(RATINGS, ln, &f[2], 0.5, 5.0)?;
        let ts = parse_i64(RATINGS, ln, "timestamp", &f[3])?;
        rows.push((user, item, rating, ts));
    }
    if let Some(tags) = tags_csv {
        check_header(TAGS, tags, "userId,movieId,tag,timestamp")?;
        for (ln, line) in lines(tags).skip_while(|(ln, _)| *ln == 1) {
            let f = csv_fields(TAGS, ln, line, 4)?;
            parse_u64(TAGS, ln, "userId", &f[0])?;
            let item = lookup(TAGS, ln, &f[1])? as usize;
            parse_i64(TAGS, ln, "timestamp", &f[3])?;
            let tag = f[2].trim().to_lowercase();
            if !tag.is_empty() && !items[item].tags.contains(&tag) {
                items[item].tags.push(tag);
            }
        }
    }
    assemble(items, rows, RATINGS)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item_line(id: u32, title: &str, date: &str, flags: &[usize]) -> String {
        let mut f = vec!["0"; 19];
        for &g in flags {
            f[g] = "1";
        }
        format!("{id}|{title}|{date}||http://x|{}", f.join("|"))
    }

    fn ml100k_items() -> Vec<u8> {
        let mut s = String::new();
        s.push_str(&item_line(1, "Toy Story (1995)", "01-Jan-1995", &[3, 4, 5]));
        s.push('\n');
        s.push_str(&item_line(
            2,
            "Godfather, The (1972)",
            "24-Mar-1972",
            &[6, 8],
        ));
        s.push('\n');
        s.push_str(&item_line(3, "unknown", "", &[0]));
        s.push('\n');
        let mut bytes = s.into_bytes();
        // A latin-1 title: "Cité" with é = 0xE9.
        bytes.extend_from_slice(
            b"4|Cit\xE9 (1996)|05-Feb-1996||http://x|0|0|0|0|0|0|0|0|1|0|0|0|0|0|0|0|0|0|0\n",
        );
        bytes
    }

    const UDATA: &str = "196\t1\t3\t881250949\n22\t2\t5\t878887116\n196\t4\t1\t881250950\n";

    #[test]
    fn ml100k_parses_items_users_and_ratings() {
        let d = parse_ml100k(UDATA, &ml100k_items()).unwrap();
        assert_eq!(d.n_items(), 4);
        assert_eq!(d.items[0].title, "Toy Story");
        assert_eq!(d.items[0].year, Some(1995));
        assert_eq!(d.items[0].release_date.as_deref(), Some("1995-01-01"));
        assert_eq!(d.items[0].genres, ["Animation", "Children's", "Comedy"]);
        assert_eq!(d.items[1].title, "Godfather, The");
        assert_eq!(d.items[1].display_title(), "The Godfather");
        assert_eq!(d.items[1].release_date.as_deref(), Some("1972-03-24"));
        assert_eq!(d.items[2].title, "unknown");
        assert_eq!(d.items[2].year, None);
        assert!(d.items[2].genres.is_empty());
        assert_eq!(d.items[3].title, "Cité");
        assert_eq!(d.items[3].genres, ["Drama"]);
        assert!(!d.items[3].platforms.is_empty());
        // Users sorted by source id: 22 → 0, 196 → 1.
        assert_eq!(d.user_source_ids, [22, 196]);
        assert_eq!(
            d.interactions[0],
            Interaction {
                user: 1,
                item: 0,
                rating: 3.0,
                timestamp: 881250949
            }
        );
        assert_eq!(d.interactions[1].user, 0);
        assert_eq!(d.interactions[1].item, 1);
        assert_eq!(d.interactions[2].item, 3);
        assert_eq!(d.interactions.len(), 3);
    }

    fn err100k(data: &str, items: &[u8]) -> DataError {
        parse_ml100k(data, items).unwrap_err()
    }

    #[test]
    fn ml100k_errors_name_file_and_line() {
        let items = ml100k_items();
        // What a user reads: file and line first, then the problem.
        assert_eq!(
            err100k("196\t1\t3\t881250949\n196\t9\t3\t1\n", &items).to_string(),
            "u.data:2: item id 9 is not in the catalog"
        );
        assert_eq!(
            err100k("196\t1\t7\t1\n", &items).to_string(),
            "u.data:1: rating \"7\" is not a number in [1, 5]"
        );
        assert!(matches!(
            err100k("196\t1\t3\t881250949\n196\t9\t3\t1\n", &items),
            DataError::UnknownItem { ref file, line: 2, item_id: 9 } if file == "u.data"
        ));
        assert!(matches!(
            err100k("196\t1\t3\t881250949\n\n196\t2\t7\t1\n", &items),
            DataError::BadRating { ref file, line: 3, .. } if file == "u.data"
        ));
        assert!(matches!(
            err100k("196\t1\tx\t1\n", &items),
            DataError::BadRating { line: 1, .. }
        ));
        assert!(matches!(
            err100k("196\t1\tNaN\t1\n", &items),
            DataError::BadRating { line: 1, .. }
        ));
        assert!(matches!(
            err100k("196\t1\t3\n", &items),
            DataError::Malformed { ref file, line: 1, .. } if file == "u.data"
        ));
        assert!(matches!(
            err100k("abc\t1\t3\t1\n", &items),
            DataError::Malformed { line: 1, .. }
        ));
        assert!(matches!(
            err100k("1\t1\t3\tnow\n", &items),
            DataError::Malformed { line: 1, .. }
        ));
        assert!(matches!(err100k("", &items), DataError::Empty { ref file } if file == "u.data"));
        assert!(matches!(err100k(UDATA, b""), DataError::Empty { ref file } if file == "u.item"));
        let bad_fields = b"1|Toy Story (1995)|01-Jan-1995\n";
        assert!(matches!(
            err100k(UDATA, bad_fields),
            DataError::Malformed { ref file, line: 1, .. } if file == "u.item"
        ));
        let mut bad_date = ml100k_items();
        bad_date.extend_from_slice(item_line(5, "X (1990)", "1990/01/01", &[]).as_bytes());
        assert!(matches!(
            err100k(UDATA, &bad_date),
            DataError::Malformed { line: 5, .. }
        ));
        let mut bad_flag = ml100k_items();
        bad_flag
            .extend_from_slice(b"5|X (1990)|||http://x|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0|2\n");
        assert!(matches!(
            err100k(UDATA, &bad_flag),
            DataError::Malformed { ref file, line: 5, .. } if file == "u.item"
        ));
        let mut dup = ml100k_items();
        dup.extend_from_slice(item_line(2, "Again (1990)", "", &[]).as_bytes());
        assert!(matches!(
            err100k(UDATA, &dup),
            DataError::DuplicateItem {
                line: 5,
                item_id: 2,
                ..
            }
        ));
    }

    const MOVIES: &str = "movieId,title,genres\n\
1,Toy Story (1995),Adventure|Animation|Children|Comedy|Fantasy\n\
11,\"American President, The (1995)\",Comedy|Drama|Romance\n\
200,Untitled Film,(no genres listed)\n";
    const RATINGS: &str = "userId,movieId,rating,timestamp\r\n\
7,11,4.5,964982703\r\n\
3,1,0.5,964981247\r\n\
7,1,5.0,964982224\r\n";
    const TAGS: &str = "userId,movieId,tag,timestamp\n\
3,1,Pixar,1139045764\n\
7,1,pixar,1139045765\n\
7,11,\"politics, romance\",1139045766\n";

    #[test]
    fn ml_latest_parses_quotes_genres_years_and_tags() {
        let d = parse_ml_latest(RATINGS, MOVIES, Some(TAGS)).unwrap();
        assert_eq!(d.n_items(), 3);
        assert_eq!(d.items[1].title, "American President, The");
        assert_eq!(d.items[1].display_title(), "The American President");
        assert_eq!(d.items[1].year, Some(1995));
        assert_eq!(d.items[1].genres, ["Comedy", "Drama", "Romance"]);
        assert_eq!(d.items[2].title, "Untitled Film");
        assert_eq!(d.items[2].year, None);
        assert!(d.items[2].genres.is_empty());
        assert_eq!(d.items[0].tags, ["pixar"]);
        assert_eq!(d.items[1].tags, ["politics, romance"]);
        assert_eq!(d.user_source_ids, [3, 7]);
        assert_eq!(d.interactions.len(), 3);
        assert_eq!(d.interactions[0].user, 1);
        assert_eq!(d.interactions[0].item, 1);
        assert_eq!(d.interactions[0].rating, 4.5);
        assert_eq!(d.interactions[1].rating, 0.5);
        let no_tags = parse_ml_latest(RATINGS, MOVIES, None).unwrap();
        assert!(no_tags.items[0].tags.is_empty());
    }

    #[test]
    fn ml_latest_errors_name_file_and_line() {
        let e = |r: &str, m: &str, t: Option<&str>| parse_ml_latest(r, m, t).unwrap_err();
        assert!(matches!(
            e("userId,movieId,rating,timestamp\n1,1,4,1\n1,99,4,1\n", MOVIES, None),
            DataError::UnknownItem { ref file, line: 3, item_id: 99 } if file == "ratings.csv"
        ));
        assert!(matches!(
            e("userId,movieId,rating,timestamp\n1,1,5.5,1\n", MOVIES, None),
            DataError::BadRating { ref file, line: 2, .. } if file == "ratings.csv"
        ));
        assert!(matches!(
            e("userId,movieId,rating,timestamp\n1,1,0.0,1\n", MOVIES, None),
            DataError::BadRating { line: 2, .. }
        ));
        assert!(matches!(
            e("userId,movieId,rating,timestamp\n1,1,4\n", MOVIES, None),
            DataError::Malformed { ref file, line: 2, .. } if file == "ratings.csv"
        ));
        assert!(matches!(
            e("user,movie,rating,timestamp\n1,1,4,1\n", MOVIES, None),
            DataError::Malformed { ref file, line: 1, .. } if file == "ratings.csv"
        ));
        assert!(matches!(
            e("userId,movieId,rating,timestamp\n", MOVIES, None),
            DataError::Empty { ref file } if file == "ratings.csv"
        ));
        assert!(matches!(
            e(RATINGS, "movieId,title,genres\n1,\"Broken, (1995),Drama\n", None),
            DataError::Malformed { ref file, line: 2, .. } if file == "movies.csv"
        ));
        assert!(matches!(
            e(RATINGS, "movieId,title,genres\n", None),
            DataError::Empty { ref file } if file == "movies.csv"
        ));
        assert!(matches!(
            e(RATINGS, "movieId,title,genres\nx,T,Drama\n", None),
            DataError::Malformed { line: 2, .. }
        ));
        assert!(matches!(
            e(
                RATINGS,
                "movieId,title,genres\n1,A,Drama\n1,B,Drama\n",
                None
            ),
            DataError::DuplicateItem {
                line: 3,
                item_id: 1,
                ..
            }
        ));
        assert!(matches!(
            e(RATINGS, MOVIES, Some("userId,movieId,tag,timestamp\n1,1,fun,1\n1,55,bad,1\n")),
            DataError::UnknownItem { ref file, line: 3, item_id: 55 } if file == "tags.csv"
        ));
        assert!(matches!(
            e(RATINGS, MOVIES, Some("userId,movieId,tag\n")),
            DataError::Malformed { ref file, line: 1, .. } if file == "tags.csv"
        ));
    }

    #[test]
    fn title_year_and_date_helpers() {
        assert_eq!(
            split_title_year("Heat (1995)"),
            ("Heat".to_string(), Some(1995))
        );
        assert_eq!(
            split_title_year("Babylon 5"),
            ("Babylon 5".to_string(), None)
        );
        assert_eq!(
            split_title_year("Show (2006–2007)"),
            ("Show (2006–2007)".to_string(), None)
        );
        assert_eq!(ml100k_date("14-Aug-1995").as_deref(), Some("1995-08-14"));
        assert_eq!(ml100k_date("14-Foo-1995"), None);
        assert_eq!(ml100k_date("32-Jan-1995"), None);
        assert_eq!(latin1_to_string(b"Cit\xE9"), "Cité");
    }
}
