//! Labelled training data for the query router.
//!
//! There is no public data set of TV-discovery queries labelled with a routing strategy,
//! so this module synthesises one. Queries are built compositionally from per-route
//! templates (see [`phrases`]): an optional interjection ("hey", "ok so"), an optional
//! lead-in that fits the core's grammar ("can you" before a verb, "show me" before a noun
//! phrase), a core phrase with nested alternatives and slots (title, genre, person, year,
//! decade, platform, time of day, companion, mood, topic, plot …), and an optional suffix
//! ("please", "tonight", "on the tv"). Noise is then applied: apostrophe/comma dropping,
//! voice style (fillers such as "um", no punctuation), typos (drop, swap, duplicate,
//! adjacent-key substitution), and random casing. Keyword-style templates (`<a;b;c>`) render
//! their parts in random order.
//!
//! # Label priority (when a query carries cues of several routes)
//! The first rule that applies wins; templates are written to follow it, and cross-route
//! "distractor" words are deliberately present so that a model must learn intent:
//! 1. **availability_check** — the ask is where / whether / how a *specific title* can be
//!    watched (platform, streaming, rent/buy, free, price, region, subscription), even if the
//!    query also names a genre, a person or "the new season".
//! 2. **gnn_similarity** — anchored on a reference title ("like X", "X vibes", "if I liked X"),
//!    even with "recommend", "what should I watch", "for me" or "in the mood for".
//! 3. **catalog_freshness** — the ask is for new / latest / trending / just-added content or
//!    new seasons/episodes of a title, even with "find", a genre, a person or a platform scope
//!    ("what's new on Netflix").
//! 4. **availability_check** — what a platform offers or what is free, with no recency
//!    ("any comedies on Hulu", "what's free to stream").
//! 5. **mood_matching** — a feeling, mood, vibe or occasion drives the choice, even with
//!    "recommend", "find" or a genre ("recommend something cozy", "comedies to make me laugh").
//! 6. **personalized_hybrid** — the system is asked to choose from the viewer's own taste or
//!    history, or an open-ended "what should I watch / surprise me / recommend something"
//!    (a loose genre is allowed: "pick a comedy for me"; "new to me" is not recency).
//! 7. **vector_search** — content described by attributes (genre, person, year, decade,
//!    topic, plot, setting, feature) for lookup. A title that only names a person
//!    ("anything with that guy from X") is a person lookup, not a similarity anchor.
//!
//! # Splits and what the test split measures
//! [`generate_splits`] returns `per_route` queries per route, split ~80/10/10
//! (`per_route / 10` each for val and test). To measure generalisation rather than
//! memorisation, the test split differs from train/val in three ways:
//! - **held-out titles**: ~20% of the title pool (catalog titles plus a built-in list of
//!   popular series/films) and ~20% of the people are used only in test;
//! - **held-out templates**: about one template in eight per route (chosen by the seed) is used
//!   only in test; 20% of test queries come from these, the rest from the shared templates;
//! - **held-out wrappers**: two interjections, two lead-ins of each kind and two suffixes
//!   appear only in test.
//!
//! Validation is drawn like train (same titles and templates) and is meant for early stopping.
//! No text occurs twice in the whole data set (compared after lowercasing and removing
//! punctuation), so no test query is also in train or val. Years used for attribute lookup
//! (`{year}`) are catalog years before 2020; recency years ("2024 releases") come from a
//! separate list, so a year alone never contradicts a label.

mod phrases;

use std::collections::HashSet;

use crate::data::Item;
use crate::rng::Rng;
use crate::router::Route;
use phrases::{Kind, Template};

/// Errors of the labelled-query parser.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueryGenError {
    #[error("line {line}: expected `query<TAB>route`, found no tab")]
    MissingTab { line: usize },
    #[error("line {line}: expected 2 tab-separated fields, found {fields}")]
    TooManyFields { line: usize, fields: usize },
    #[error("line {line}: the query is empty")]
    EmptyQuery { line: usize },
    #[error("line {line}: unknown route `{route}` (expected one of gnn_similarity, vector_search, mood_matching, catalog_freshness, availability_check, personalized_hybrid)")]
    UnknownRoute { line: usize, route: String },
}

/// Facts about the catalog used to fill template slots.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CatalogFacts {
    /// Display titles ("The Godfather"), without year, deduplicated.
    pub titles: Vec<String>,
    /// Distinct release years, ascending.
    pub years: Vec<u16>,
    /// Distinct genres as the catalog spells them.
    pub genres: Vec<String>,
    /// Well-known actors and directors (built-in list: MovieLens has no people).
    pub people: Vec<String>,
}

impl CatalogFacts {
    /// From catalog items (titles without year; genres deduplicated; people from a built-in
    /// list of well-known actors/directors, since MovieLens 100K has no people).
    pub fn from_items(items: &[Item]) -> Self {
        let mut titles = Vec::new();
        let mut seen_titles = HashSet::new();
        let mut years = Vec::new();
        let mut genres = Vec::new();
        let mut seen_genres = HashSet::new();
        for it in items {
            let t = spoken_title(&it.title);
            if !t.is_empty()
                && !t.eq_ignore_ascii_case("unknown")
                && seen_titles.insert(t.to_lowercase())
            {
                titles.push(t);
            }
            if let Some(y) = it.year {
                years.push(y);
            }
            for g in &it.genres {
                let g = g.trim();
                if g.is_empty() || g.starts_with('(') || g.eq_ignore_ascii_case("unknown") {
                    continue;
                }
                if seen_genres.insert(g.to_lowercase()) {
                    genres.push(g.to_string());
                }
            }
        }
        years.sort_unstable();
        years.dedup();
        CatalogFacts {
            titles,
            years,
            genres,
            people: phrases::PEOPLE.iter().map(|s| s.to_string()).collect(),
        }
    }
}

/// One query with its route.
#[derive(Clone, Debug, PartialEq)]
pub struct LabeledQuery {
    pub text: String,
    pub route: Route,
}

/// Train / validation / test splits.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct QuerySplits {
    pub train: Vec<LabeledQuery>,
    pub val: Vec<LabeledQuery>,
    pub test: Vec<LabeledQuery>,
}

/// How a catalog title is said by people: the reading order of [`crate::data::display_title`]
/// ("Godfather, The" → "The Godfather") without a parenthesised alternative title or a
/// trailing "(1995)" ("Seven (Se7en)" → "Seven").
pub fn spoken_title(raw: &str) -> String {
    let t = crate::data::display_title(raw.trim());
    match t.find(" (") {
        Some(p) if p > 0 => t[..p].trim_end().to_string(),
        _ => t,
    }
}

/// Number of templates per route (train + held-out).
pub fn template_count(route: Route) -> usize {
    templates(route).len()
}

fn templates(route: Route) -> &'static [Template] {
    match route {
        Route::GnnSimilarity => phrases::GNN_SIMILARITY,
        Route::VectorSearch => phrases::VECTOR_SEARCH,
        Route::MoodMatching => phrases::MOOD_MATCHING,
        Route::CatalogFreshness => phrases::CATALOG_FRESHNESS,
        Route::AvailabilityCheck => phrases::AVAILABILITY_CHECK,
        Route::PersonalizedHybrid => phrases::PERSONALIZED_HYBRID,
    }
}

/// Parse the hand-written TSV (`query<TAB>route`, `#` comments, blank lines ok); errors
/// name the 1-based line.
pub fn parse_labeled_tsv(text: &str) -> Result<Vec<LabeledQuery>, QueryGenError> {
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let l = raw.trim_end_matches('\r');
        if l.trim().is_empty() || l.trim_start().starts_with('#') {
            continue;
        }
        let fields: Vec<&str> = l.split('\t').collect();
        if fields.len() < 2 {
            return Err(QueryGenError::MissingTab { line });
        }
        if fields.len() > 2 {
            return Err(QueryGenError::TooManyFields {
                line,
                fields: fields.len(),
            });
        }
        let query = fields[0].trim();
        if query.is_empty() {
            return Err(QueryGenError::EmptyQuery { line });
        }
        let name = fields[1].trim();
        let route = Route::from_name(name).ok_or_else(|| QueryGenError::UnknownRoute {
            line,
            route: name.to_string(),
        })?;
        out.push(LabeledQuery {
            text: query.to_string(),
            route,
        });
    }
    Ok(out)
}

// ---------------------------------------------------------------------------
// Generation.

/// A generated query plus the bookkeeping the tests check.
#[cfg_attr(not(test), allow(dead_code))]
#[derive(Clone, Debug)]
struct Generated {
    text: String,
    route: Route,
    /// Titles put into `{title}` slots (before noise).
    titles: Vec<String>,
    /// Index of the template in its route's table.
    template: usize,
}

#[derive(Default)]
struct DetailedSplits {
    train: Vec<Generated>,
    val: Vec<Generated>,
    test: Vec<Generated>,
}

/// Slot pools that differ between the train/val side and the test side.
struct SidePools {
    titles: Vec<String>,
    people: Vec<String>,
    interjections: Vec<&'static str>,
    polite: Vec<&'static str>,
    request: Vec<&'static str>,
    suffixes: Vec<&'static str>,
}

struct GenreForm {
    mods: Vec<String>,
    plurals: Vec<String>,
}

/// Slot pools shared by both sides.
struct SharedPools {
    genres: Vec<GenreForm>,
    years: Vec<String>,
}

fn genre_forms(genres: &[String]) -> Vec<GenreForm> {
    let mut out = Vec::new();
    let mut seen = HashSet::new();
    let from_table = |key: &str| {
        phrases::GENRE_FORMS
            .iter()
            .find(|(k, _, _)| *k == key)
            .map(|(_, m, p)| GenreForm {
                mods: m.iter().map(|s| s.to_string()).collect(),
                plurals: p.iter().map(|s| s.to_string()).collect(),
            })
    };
    for g in genres {
        let key = g.trim().to_lowercase();
        if key.is_empty() || !seen.insert(key.clone()) {
            continue;
        }
        out.push(from_table(&key).unwrap_or_else(|| GenreForm {
            mods: vec![key.clone()],
            plurals: vec![format!("{key} movies"), format!("{key} shows")],
        }));
    }
    if out.is_empty() {
        for (k, _, _) in phrases::GENRE_FORMS {
            if let Some(f) = from_table(k) {
                out.push(f);
            }
        }
    }
    out
}

/// Split `xs` (already shuffled) so that ~`frac` goes to the second part, each part non-empty
/// when `xs` has at least two elements.
fn holdout<T: Clone>(xs: &[T], frac: f64) -> (Vec<T>, Vec<T>) {
    if xs.len() < 2 {
        return (xs.to_vec(), xs.to_vec());
    }
    let k = ((xs.len() as f64 * frac).round() as usize).clamp(1, xs.len() - 1);
    (xs[k..].to_vec(), xs[..k].to_vec())
}

/// Share of the title pool (and of the people) used only in test.
const TEST_TITLE_FRACTION: f64 = 0.2;
/// Share of each route's templates used only in test.
const HELD_TEMPLATE_FRACTION: f64 = 1.0 / 8.0;
/// Share of test queries drawn from the held-out templates.
const HELD_TEST_SHARE: f64 = 0.2;

/// Synthetic "Firstname Lastname" people added to the train side (never to test).
const SYNTHETIC_PEOPLE: usize = 400;

/// `n` distinct synthetic names from [`phrases::FIRST_NAMES`] × [`phrases::SURNAMES`]
/// (some with a middle initial or a second given name), none equal to, containing or
/// contained in a name of `real` (compared lowercase), so a held-out real person never
/// reaches the train side this way.
fn synthetic_people(real: &[String], n: usize, rng: &mut Rng) -> Vec<String> {
    let real: Vec<String> = real.iter().map(|p| p.to_lowercase()).collect();
    let mut seen = HashSet::new();
    let mut out = Vec::with_capacity(n);
    let mut attempts = 0;
    while out.len() < n && attempts < 50 * n + 100 {
        attempts += 1;
        let first = pick_str(rng, phrases::FIRST_NAMES);
        let last = pick_str(rng, phrases::SURNAMES);
        let x = rng.next_f64();
        let name = if x < 0.10 {
            let initial = (b'A' + rng.below(26) as u8) as char;
            format!("{first} {initial}. {last}")
        } else if x < 0.15 {
            format!("{first} {} {last}", pick_str(rng, phrases::FIRST_NAMES))
        } else {
            format!("{first} {last}")
        };
        let l = name.to_lowercase();
        if real
            .iter()
            .any(|r| l.contains(r.as_str()) || r.contains(l.as_str()))
        {
            continue;
        }
        if seen.insert(l) {
            out.push(name);
        }
    }
    out
}

/// Everything decided once per seed: pools and held-out sets.
struct Plan {
    train_side: SidePools,
    test_side: SidePools,
    shared: SharedPools,
    /// `held[route][template]`: template used only in test.
    held: Vec<Vec<bool>>,
}

impl Plan {
    fn new(facts: &CatalogFacts, rng: &mut Rng) -> Plan {
        // Title pool: catalog titles + built-in popular titles, case-insensitively unique.
        let mut seen = HashSet::new();
        let mut titles: Vec<String> = Vec::new();
        let catalog = facts.titles.iter().map(|t| spoken_title(t));
        let extras = phrases::EXTRA_TITLES.iter().map(|t| t.to_string());
        for t in catalog.chain(extras) {
            let t = t.trim().to_string();
            if t.chars().count() >= 2 && seen.insert(t.to_lowercase()) {
                titles.push(t);
            }
        }
        rng.shuffle(&mut titles);
        let (train_titles, test_titles) = holdout(&titles, TEST_TITLE_FRACTION);

        let mut people: Vec<String> = facts
            .people
            .iter()
            .map(|p| p.trim().to_string())
            .filter(|p| !p.is_empty())
            .collect();
        if people.len() < 2 {
            people = phrases::PEOPLE.iter().map(|s| s.to_string()).collect();
        }
        let mut pseen = HashSet::new();
        people.retain(|p| pseen.insert(p.to_lowercase()));
        rng.shuffle(&mut people);
        let (train_people, test_people) = holdout(&people, TEST_TITLE_FRACTION);

        let mut split_wrappers = |xs: &[&'static str]| -> (Vec<&'static str>, Vec<&'static str>) {
            let mut v = xs.to_vec();
            rng.shuffle(&mut v);
            let k = 2.min(v.len().saturating_sub(1));
            let test_all = v.clone();
            (v[k..].to_vec(), test_all)
        };
        let (i_tr, i_te) = split_wrappers(phrases::INTERJECTIONS);
        let (p_tr, p_te) = split_wrappers(phrases::POLITE_LEADINS);
        let (r_tr, r_te) = split_wrappers(phrases::REQUEST_LEADINS);
        let (s_tr, s_te) = split_wrappers(phrases::SUFFIXES);

        let mut held = Vec::new();
        for route in Route::ALL {
            let n = templates(route).len();
            let mut idx: Vec<usize> = (0..n).collect();
            rng.shuffle(&mut idx);
            let k = ((n as f64 * HELD_TEMPLATE_FRACTION).round() as usize)
                .clamp(1, n.saturating_sub(1).max(1));
            let mut h = vec![false; n];
            for &i in idx.iter().take(k) {
                h[i] = true;
            }
            held.push(h);
        }

        let mut years: Vec<String> = facts
            .years
            .iter()
            .filter(|&&y| (1900..2020).contains(&y))
            .map(|y| y.to_string())
            .collect();
        if years.is_empty() {
            years = (1975..2000).map(|y| y.to_string()).collect();
        }

        let synthetic = synthetic_people(&people, SYNTHETIC_PEOPLE, &mut Rng::new(rng.next_u64()));
        let mut train_people = train_people;
        train_people.extend(synthetic);

        Plan {
            train_side: SidePools {
                titles: train_titles,
                people: train_people,
                interjections: i_tr,
                polite: p_tr,
                request: r_tr,
                suffixes: s_tr,
            },
            test_side: SidePools {
                titles: test_titles,
                people: test_people,
                interjections: i_te,
                polite: p_te,
                request: r_te,
                suffixes: s_te,
            },
            shared: SharedPools {
                genres: genre_forms(&facts.genres),
                years,
            },
            held,
        }
    }
}

/// Expands the template mini-language (see [`phrases`]) with one side's pools.
struct Expander<'a> {
    rng: &'a mut Rng,
    side: &'a SidePools,
    shared: &'a SharedPools,
    titles: Vec<String>,
}

/// Index of the bracket closing the one opened at `open` (any of `[<{` / `]>}` nest).
fn matching_close(s: &str, open: usize) -> Option<usize> {
    let mut depth = 0usize;
    for (i, c) in s[open..].char_indices() {
        match c {
            '[' | '<' | '{' => depth += 1,
            ']' | '>' | '}' => {
                depth = depth.checked_sub(1)?;
                if depth == 0 {
                    return Some(open + i);
                }
            }
            _ => {}
        }
    }
    None
}

/// Split at `sep` where not inside brackets.
fn split_top(s: &str, sep: char) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut depth = 0i32;
    let mut start = 0;
    for (i, c) in s.char_indices() {
        match c {
            '[' | '<' | '{' => depth += 1,
            ']' | '>' | '}' => depth -= 1,
            c if c == sep && depth == 0 => {
                parts.push(&s[start..i]);
                start = i + c.len_utf8();
            }
            _ => {}
        }
    }
    parts.push(&s[start..]);
    parts
}

fn pick_str<'b>(rng: &mut Rng, xs: &'b [&'b str]) -> &'b str {
    if xs.is_empty() {
        ""
    } else {
        xs[rng.below(xs.len())]
    }
}

impl Expander<'_> {
    fn expand(&mut self, s: &str) -> String {
        let mut out = String::new();
        self.expand_into(s, &mut out);
        out
    }

    fn expand_into(&mut self, s: &str, out: &mut String) {
        let mut i = 0;
        while i < s.len() {
            let c = s[i..].chars().next().unwrap_or(' ');
            if matches!(c, '[' | '<' | '{') {
                if let Some(end) = matching_close(s, i) {
                    let inner = &s[i + 1..end];
                    match c {
                        '[' => {
                            let alts = split_top(inner, '|');
                            let pick = alts[self.rng.below(alts.len())];
                            self.expand_into(pick, out);
                        }
                        '<' => {
                            let mut parts: Vec<String> = split_top(inner, ';')
                                .into_iter()
                                .map(|p| self.expand(p))
                                .collect();
                            self.rng.shuffle(&mut parts);
                            out.push_str(&parts.join(" "));
                        }
                        _ => {
                            let filled = self.slot(inner);
                            out.push_str(&filled);
                        }
                    }
                    i = end + 1;
                    continue;
                }
            }
            out.push(c);
            i += c.len_utf8();
        }
    }

    /// Filler for `{name}`; an unknown name is kept literally (the tests reject that).
    fn slot(&mut self, name: &str) -> String {
        let r = &mut *self.rng;
        match name {
            "title" => {
                if self.side.titles.is_empty() {
                    return String::new();
                }
                let t = self.side.titles[r.below(self.side.titles.len())].clone();
                self.titles.push(t.clone());
                match t.strip_prefix("The ") {
                    Some(rest) if r.chance(0.3) => rest.to_string(),
                    _ => t,
                }
            }
            "person" => {
                if self.side.people.is_empty() {
                    return String::new();
                }
                self.side.people[r.below(self.side.people.len())].clone()
            }
            "genre" | "genres" => {
                let g = &self.shared.genres[r.below(self.shared.genres.len())];
                let xs = if name == "genre" { &g.mods } else { &g.plurals };
                xs[r.below(xs.len())].clone()
            }
            "year" => self.shared.years[r.below(self.shared.years.len())].clone(),
            _ => {
                let table: &[&str] = match name {
                    "kind" => phrases::KIND,
                    "kinds" => phrases::KINDS,
                    "sim" => phrases::SIM,
                    "decade" => phrases::DECADES,
                    "recent_year" => phrases::RECENT_YEARS,
                    "period" => phrases::PERIODS,
                    "platform" => phrases::PLATFORMS,
                    "time" => phrases::TIMES,
                    "company" => phrases::COMPANIONS,
                    "topic" => phrases::TOPICS,
                    "topicmod" => phrases::TOPICMODS,
                    "plot" => phrases::PLOTS,
                    "role" => phrases::ROLES,
                    "activity" => phrases::ACTIVITIES,
                    "place" => phrases::PLACES,
                    "feature" => phrases::FEATURES,
                    "moodadj" => phrases::MOODADJ,
                    "feeling" => phrases::FEELINGS,
                    "occasion" => phrases::OCCASIONS,
                    "badday" => phrases::BADDAYS,
                    _ => return format!("{{{name}}}"),
                };
                pick_str(r, table).to_string()
            }
        }
    }
}

/// Collapse spaces and remove spaces before punctuation.
fn tidy(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for w in s.split_whitespace() {
        let first = w.chars().next().unwrap_or(' ');
        if !out.is_empty() && !matches!(first, ',' | '.' | '?' | '!' | ':' | ';') {
            out.push(' ');
        }
        out.push_str(w);
    }
    // A leading punctuation mark (from an empty alternative) is dropped.
    let trimmed = out.trim_start_matches([',', '.', ' ', '-', ':']);
    let mut res = trimmed
        .replace(",,", ",")
        .replace(", ,", ",")
        .replace(" - -", " -");
    while res.ends_with([',', '-', ':', ' ']) {
        res.pop();
    }
    res
}

fn capitalize_first(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().collect::<String>() + c.as_str(),
        None => String::new(),
    }
}

fn qwerty_neighbor(c: char, rng: &mut Rng) -> char {
    let lower = c.to_ascii_lowercase();
    for row in phrases::QWERTY_ROWS {
        if let Some(p) = row.find(lower) {
            let bytes = row.as_bytes();
            let q = if p == 0 {
                1
            } else if p + 1 == bytes.len() || rng.chance(0.5) {
                p - 1
            } else {
                p + 1
            };
            let n = bytes[q] as char;
            return if c.is_ascii_uppercase() {
                n.to_ascii_uppercase()
            } else {
                n
            };
        }
    }
    c
}

/// One typo in one word of at least four ASCII letters.
fn typo(text: &str, rng: &mut Rng) -> String {
    let words: Vec<&str> = text.split(' ').collect();
    let eligible: Vec<usize> = (0..words.len())
        .filter(|&i| words[i].len() >= 4 && words[i].chars().all(|c| c.is_ascii_alphabetic()))
        .collect();
    if eligible.is_empty() {
        return text.to_string();
    }
    let wi = eligible[rng.below(eligible.len())];
    let mut cs: Vec<char> = words[wi].chars().collect();
    let pos = 1 + rng.below(cs.len() - 1); // keep the first letter, as people mostly do
    match rng.below(4) {
        0 => {
            cs.remove(pos);
        }
        1 => {
            let p = pos.min(cs.len() - 2);
            cs.swap(p, p + 1);
        }
        2 => {
            let c = cs[pos];
            cs.insert(pos, c);
        }
        _ => {
            cs[pos] = qwerty_neighbor(cs[pos], rng);
        }
    }
    let w: String = cs.into_iter().collect();
    let mut out: Vec<String> = words.iter().map(|s| s.to_string()).collect();
    out[wi] = w;
    out.join(" ")
}

/// Replace one informal-spelling candidate ("want to" → "wanna"), matched on whole words.
fn informal(s: &str, rng: &mut Rng) -> String {
    let padded = format!(" {s} ");
    let lower = padded.to_lowercase();
    let hits: Vec<&(&str, &str)> = phrases::INFORMAL
        .iter()
        .filter(|(from, _)| lower.contains(&format!(" {} ", from.to_lowercase())))
        .collect();
    if hits.is_empty() || lower.len() != padded.len() {
        return s.to_string();
    }
    let (from, to) = hits[rng.below(hits.len())];
    let needle = format!(" {} ", from.to_lowercase());
    match lower.find(&needle) {
        Some(p) => {
            let out = format!("{} {} {}", &padded[..p], to, &padded[p + needle.len()..]);
            out.split_whitespace().collect::<Vec<_>>().join(" ")
        }
        None => s.to_string(),
    }
}

/// Surface noise: punctuation habits, informal spellings, voice style, casing, typos.
fn noisify(text: &str, rng: &mut Rng, forced_typos: usize) -> String {
    let mut s = text.to_string();
    if rng.chance(0.35) {
        s = s.replace('\'', "");
    }
    if rng.chance(0.4) {
        s = s.replace(',', "");
    }
    if rng.chance(0.15) {
        s = informal(&s, rng);
    }
    if rng.chance(0.08) {
        // Voice transcript: no punctuation, a filler at the start or after the first word.
        let bare: String = s
            .chars()
            .filter(|c| !matches!(c, '?' | '.' | ',' | '!' | ':' | ';'))
            .collect();
        let filler = pick_str(rng, phrases::FILLERS);
        let mut words: Vec<&str> = bare.split_whitespace().collect();
        let at = if words.len() > 2 && rng.chance(0.5) {
            1
        } else {
            0
        };
        words.insert(at, filler);
        s = words.join(" ").to_lowercase();
    }
    let x = rng.next_f64();
    s = if x < 0.55 {
        s.to_lowercase()
    } else if x < 0.80 {
        s
    } else if x < 0.92 {
        capitalize_first(&s)
    } else if x < 0.97 {
        s.split(' ')
            .map(capitalize_first)
            .collect::<Vec<_>>()
            .join(" ")
    } else {
        s.to_uppercase()
    };
    let mut n_typos = forced_typos;
    if rng.chance(0.2) {
        n_typos += 1;
    }
    if rng.chance(0.05) {
        n_typos += 1;
    }
    for _ in 0..n_typos {
        s = typo(&s, rng);
    }
    s
}

/// Key used to reject duplicates: lowercase alphanumerics, single spaces.
fn dedup_key(s: &str) -> String {
    let mapped: String = s
        .chars()
        .map(|c| {
            if c.is_alphanumeric() {
                c.to_lowercase().next().unwrap_or(c)
            } else {
                ' '
            }
        })
        .collect();
    mapped.split_whitespace().collect::<Vec<_>>().join(" ")
}

const TIMEISH_SUFFIXES: &[&str] = &[
    "tonight",
    "right now",
    "now",
    "this evening",
    "for the weekend",
];

/// Build one query (core + wrappers) from a template.
fn compose(
    template: &Template,
    side: &SidePools,
    shared: &SharedPools,
    rng: &mut Rng,
) -> (String, Vec<String>) {
    let (kind, text) = *template;
    let mut ex = Expander {
        rng,
        side,
        shared,
        titles: Vec::new(),
    };
    let core = tidy(&ex.expand(text));
    let titles = ex.titles;
    let rng = ex.rng;

    let mut front: Vec<String> = Vec::new();
    if rng.chance(0.15) {
        let mut w = pick_str(rng, &side.interjections).to_string();
        if rng.chance(0.4) {
            w.push(',');
        }
        front.push(w);
    }
    match kind {
        Kind::V if rng.chance(0.3) => front.push(pick_str(rng, &side.polite).to_string()),
        Kind::N if rng.chance(0.35) => front.push(pick_str(rng, &side.request).to_string()),
        _ => {}
    }
    let mut body = core;
    let ends_q = body.ends_with('?');
    if rng.chance(0.22) && !ends_q {
        let suf = pick_str(rng, &side.suffixes);
        if TIMEISH_SUFFIXES.contains(&suf) && rng.chance(0.2) {
            body = format!("{suf}, {body}");
        } else {
            body = format!("{body} {suf}");
        }
    }
    front.push(body);
    let mut q = tidy(&front.join(" "));
    if !q.ends_with(['?', '!', '.']) {
        if kind == Kind::Q && rng.chance(0.45) {
            q.push('?');
        } else if rng.chance(0.04) {
            q.push(if rng.chance(0.5) { '.' } else { '!' });
        }
    }
    (q, titles)
}

/// Generate `n` unique queries for `route` on one side into `out`.
#[allow(clippy::too_many_arguments)]
fn fill(
    out: &mut Vec<Generated>,
    route: Route,
    n: usize,
    allowed: &[usize],
    held: &[usize],
    held_share: f64,
    side: &SidePools,
    shared: &SharedPools,
    seen: &mut HashSet<String>,
    rng: &mut Rng,
) {
    let table = templates(route);
    if allowed.is_empty() && held.is_empty() {
        return;
    }
    let mut got = 0;
    let mut attempts = 0usize;
    let limit = 300 * n + 5000;
    while got < n && attempts < limit {
        attempts += 1;
        let use_held = !held.is_empty() && (allowed.is_empty() || rng.chance(held_share));
        let ti = if use_held {
            held[rng.below(held.len())]
        } else {
            allowed[rng.below(allowed.len())]
        };
        let (core, titles) = compose(&table[ti], side, shared, rng);
        // Once easy combinations run out, force typos to reach unseen surface forms.
        let forced = if attempts > 30 * n + 500 {
            1 + attempts / (60 * n + 1000)
        } else {
            0
        };
        let text = noisify(&core, rng, forced);
        if text.trim().is_empty() {
            continue;
        }
        if seen.insert(dedup_key(&text)) {
            out.push(Generated {
                text,
                route,
                titles,
                template: ti,
            });
            got += 1;
        }
    }
}

fn generate_detailed(facts: &CatalogFacts, per_route: usize, seed: u64) -> DetailedSplits {
    let mut rng = Rng::new(seed);
    let plan = Plan::new(facts, &mut rng);
    let n_val = per_route / 10;
    let n_test = per_route / 10;
    let n_train = per_route - n_val - n_test;
    let mut seen = HashSet::new();
    let mut d = DetailedSplits::default();
    for (ri, route) in Route::ALL.into_iter().enumerate() {
        let held_mask = &plan.held[ri];
        let allowed: Vec<usize> = (0..held_mask.len()).filter(|&i| !held_mask[i]).collect();
        let held: Vec<usize> = (0..held_mask.len()).filter(|&i| held_mask[i]).collect();
        fill(
            &mut d.train,
            route,
            n_train,
            &allowed,
            &[],
            0.0,
            &plan.train_side,
            &plan.shared,
            &mut seen,
            &mut rng,
        );
        fill(
            &mut d.val,
            route,
            n_val,
            &allowed,
            &[],
            0.0,
            &plan.train_side,
            &plan.shared,
            &mut seen,
            &mut rng,
        );
        fill(
            &mut d.test,
            route,
            n_test,
            &allowed,
            &held,
            HELD_TEST_SHARE,
            &plan.test_side,
            &plan.shared,
            &mut seen,
            &mut rng,
        );
    }
    rng.shuffle(&mut d.train);
    rng.shuffle(&mut d.val);
    rng.shuffle(&mut d.test);
    d
}

/// Deterministic for a seed. Balanced: `per_route` queries per route in total, split ~80/10/10
/// (`per_route / 10` each for val and test, the rest train). Test uses held-out titles,
/// people, templates and wrappers; see the module docs for the design and the label priority.
pub fn generate_splits(facts: &CatalogFacts, per_route: usize, seed: u64) -> QuerySplits {
    let d = generate_detailed(facts, per_route, seed);
    let conv = |v: Vec<Generated>| {
        v.into_iter()
            .map(|g| LabeledQuery {
                text: g.text,
                route: g.route,
            })
            .collect()
    };
    QuerySplits {
        train: conv(d.train),
        val: conv(d.val),
        test: conv(d.test),
    }
}

#[cfg(test)]
mod tests;
