//! Synthetic training queries for the attention selector.
//!
//! Six intents, each served by two mechanisms (primary first), following the spec table:
//!
//! | intent            | mechanisms                  |
//! |-------------------|-----------------------------|
//! | similar content   | graph_rope, edge_featured   |
//! | genre hierarchy   | hyperbolic, hierarchical    |
//! | cross-platform    | cross, local_global         |
//! | long sequences    | flash, linear               |
//! | multi-hop         | neighborhood, dual_space    |
//! | mixed             | moe, multi_head             |
//!
//! Queries may carry two intents (a main request plus a modifier clause). Their target is a
//! soft distribution: each intent gets a share (equal, except that a cross-platform
//! *constraint* gets 0.4 next to a 0.6 main intent), split 2:1 between its primary and
//! secondary mechanism. For "sci-fi shows similar to Stranger Things on my platforms" that is
//! graph_rope 0.40, cross 0.27, edge_featured 0.20, local_global 0.13 — top 3 = GraphRoPE,
//! cross, edge-featured. The hand-written evaluation set lives apart from this generator, in
//! `tests/data/attention_handwritten.tsv`.

use crate::rng::Rng;

/// What a query asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Intent {
    Similar,
    GenreHierarchy,
    CrossPlatform,
    LongHistory,
    MultiHop,
    Mixed,
}

/// All intents, in table order.
pub const INTENTS: [Intent; 6] = [
    Intent::Similar,
    Intent::GenreHierarchy,
    Intent::CrossPlatform,
    Intent::LongHistory,
    Intent::MultiHop,
    Intent::Mixed,
];

/// The selector's classes: registry names of the twelve mechanisms the table uses.
pub const SELECTOR_MECHANISMS: [&str; 12] = [
    "graph_rope",
    "edge_featured",
    "hyperbolic",
    "hierarchical",
    "cross",
    "local_global",
    "flash",
    "linear",
    "neighborhood",
    "dual_space",
    "moe",
    "multi_head",
];

impl Intent {
    /// Stable name used in data files.
    pub fn name(self) -> &'static str {
        match self {
            Intent::Similar => "similar",
            Intent::GenreHierarchy => "genre_hierarchy",
            Intent::CrossPlatform => "cross_platform",
            Intent::LongHistory => "long_history",
            Intent::MultiHop => "multi_hop",
            Intent::Mixed => "mixed",
        }
    }

    /// Parses [`Intent::name`].
    pub fn parse(s: &str) -> Option<Intent> {
        INTENTS.iter().copied().find(|i| i.name() == s.trim())
    }

    /// Class ids (into [`SELECTOR_MECHANISMS`]) of the primary and secondary mechanism.
    pub fn mechanisms(self) -> [usize; 2] {
        let i = INTENTS.iter().position(|&x| x == self).expect("listed");
        [2 * i, 2 * i + 1]
    }
}

/// A generated query with its intents (main intent first).
#[derive(Clone, Debug, PartialEq)]
pub struct Example {
    pub text: String,
    pub intents: Vec<Intent>,
}

/// Soft target over [`SELECTOR_MECHANISMS`] for a set of intents (see the module docs).
pub fn target_distribution(intents: &[Intent]) -> [f32; 12] {
    let mut t = [0.0f32; 12];
    if intents.is_empty() {
        return t;
    }
    let shares: Vec<f32> = if intents.len() == 2 && intents.contains(&Intent::CrossPlatform) {
        intents
            .iter()
            .map(|&i| if i == Intent::CrossPlatform { 0.4 } else { 0.6 })
            .collect()
    } else {
        vec![1.0 / intents.len() as f32; intents.len()]
    };
    for (&i, s) in intents.iter().zip(shares) {
        let [p, q] = i.mechanisms();
        t[p] += s * 2.0 / 3.0;
        t[q] += s / 3.0;
    }
    t
}

/// The soft target as integer row counts (30ths, reduced by their gcd), for trainers that
/// take one label per row: repeating a text once per count makes its summed cross-entropy
/// proportional to the soft-target cross-entropy.
pub fn label_counts(intents: &[Intent]) -> Vec<(usize, usize)> {
    let raw: Vec<(usize, usize)> = target_distribution(intents)
        .iter()
        .enumerate()
        .map(|(c, &w)| (c, (w * 30.0).round() as usize))
        .filter(|&(_, n)| n > 0)
        .collect();
    fn gcd(a: usize, b: usize) -> usize {
        if b == 0 {
            a
        } else {
            gcd(b, a % b)
        }
    }
    let g = raw.iter().fold(0, |g, &(_, n)| gcd(g, n)).max(1);
    raw.into_iter().map(|(c, n)| (c, n / g)).collect()
}

const TITLES: &[&str] = &[
    "Stranger Things",
    "Breaking Bad",
    "The Crown",
    "Dark",
    "Severance",
    "The Office",
    "Fleabag",
    "Succession",
    "Mindhunter",
    "The Expanse",
    "Black Mirror",
    "Ozark",
    "Chernobyl",
    "Arcane",
    "The Wire",
    "Parks and Recreation",
    "Westworld",
    "True Detective",
    "The Mandalorian",
    "Ted Lasso",
    "Squid Game",
    "Money Heist",
    "Narcos",
    "The Witcher",
    "Better Call Saul",
    "Sherlock",
    "Peaky Blinders",
    "The Bear",
    "Andor",
    "Foundation",
    "Shogun",
    "Wednesday",
    "The Boys",
    "Invincible",
    "Lost",
    "Twin Peaks",
    "Mad Men",
    "Friends",
    "Barry",
    "Dexter",
];
const GENRES: &[&str] = &[
    "sci-fi",
    "horror",
    "comedy",
    "drama",
    "thriller",
    "crime",
    "fantasy",
    "documentary",
    "romance",
    "animated",
    "mystery",
    "action",
    "western",
    "anime",
    "reality",
    "historical",
];
const SUBGENRES: &[&str] = &[
    "space opera",
    "cyberpunk",
    "slasher",
    "cosy mystery",
    "dark comedy",
    "legal drama",
    "heist",
    "folk horror",
    "true crime",
    "period drama",
    "sitcom",
    "mockumentary",
    "psychological thriller",
    "high fantasy",
    "nature documentary",
    "procedural",
    "time travel",
    "post-apocalyptic",
    "noir",
    "romcom",
];
const PLATFORMS: &[&str] = &[
    "Netflix",
    "Hulu",
    "Disney+",
    "Max",
    "Prime Video",
    "Apple TV+",
    "Peacock",
    "Paramount+",
    "Crunchyroll",
    "Tubi",
];
const PEOPLE: &[&str] = &[
    "Bryan Cranston",
    "Phoebe Waller-Bridge",
    "David Fincher",
    "Pedro Pascal",
    "Florence Pugh",
    "the Duffer brothers",
    "Vince Gilligan",
    "Zendaya",
    "Oscar Isaac",
    "Greta Gerwig",
    "Mahershala Ali",
    "Jean Smart",
    "Bill Hader",
    "Rhea Seehorn",
    "Denis Villeneuve",
];
const LEADS: &[&str] = &[
    "",
    "",
    "find ",
    "show me ",
    "recommend ",
    "i want ",
    "any ",
    "looking for ",
    "give me ",
    "can you find ",
];

/// Standalone queries, one list per intent, in [`INTENTS`] order. Slots: {t} title, {g} genre,
/// {s} sub-genre, {p}/{p2} platforms, {n} person, {k} a count, {y} a year.
const FULL: [&[&str]; 6] = [
    &[
        "shows like {t}",
        "something similar to {t}",
        "more like {t}",
        "i loved {t} what should i watch next",
        "{g} shows similar to {t}",
        "anything in the vein of {t}",
        "what's comparable to {t}",
        "series that feel like {t}",
        "if you enjoyed {t} try what",
        "titles resembling {t}",
        "same vibe as {t}",
        "close matches for {t}",
        "recommendations based on {t}",
        "{t} but {g}",
        "what else is like {t} and {t2}",
        "similar content to {t}",
        "alternatives to {t}",
        "a {g} series with the feel of {t}",
        "shows that remind me of {t}",
        "like {t} please",
    ],
    &[
        "browse {g} subgenres",
        "what kinds of {g} are there",
        "narrow {g} down to {s}",
        "explore the {g} genre tree",
        "which genre does {s} belong to",
        "drill down into {g}",
        "sub-categories of {g}",
        "go one level up from {s}",
        "the {s} branch of {g}",
        "break {g} into smaller categories",
        "parent genre of {s}",
        "{s} within {g}",
        "how is {g} organised into niches",
        "walk me through the {g} hierarchy",
        "siblings of {s} in the genre tree",
        "broader categories above {s}",
        "niche corners of {g}",
        "from {g} to {s} to specific titles",
        "the taxonomy of {g}",
        "{g} then {s}",
    ],
    &[
        "what can i watch on my platforms",
        "only things on {p}",
        "is {t} streaming on {p}",
        "available on {p} or {p2}",
        "which of my services has {t}",
        "compare {p} and {p2}",
        "search across all my streaming apps",
        "stuff on my subscriptions",
        "where can i stream {t}",
        "on {p} tonight",
        "across {p} {p2} and my other services",
        "titles i can watch without a new subscription",
        "what's on {p} that i have access to",
        "match my apps against the catalog",
        "free on {p}",
        "whats new on {p}",
        "my services only",
        "is it on {p}",
        "check {p} and {p2} for {t}",
        "everything available to me right now",
    ],
    &[
        "based on my entire watch history",
        "look at everything i have watched over the years",
        "use my full viewing history",
        "my last {k} episodes",
        "analyse my long binge history",
        "from all {k} shows i have seen",
        "considering everything i watched since {y}",
        "go through my whole history",
        "my complete watch log",
        "years of my viewing data",
        "all my past sessions",
        "my history of {k} titles",
        "everything i ever finished",
        "patterns in my long history",
        "my full timeline of watched shows",
        "since {y} what have i liked",
        "thousands of things i watched",
        "my entire backlog of watched episodes",
        "long term taste from my history",
        "every show in my history",
    ],
    &[
        "shows with actors who worked with {n}",
        "shows from people connected to {t} through its cast",
        "friends of friends recommendations",
        "by the writer of the show that inspired {t}",
        "two steps away from {t}",
        "who did the cast of {t} work with next",
        "co-stars of {n}'s co-stars",
        "fans of {t} also liked shows liked by whom",
        "connections between {n} and {t}",
        "follow the crew of {t} to other shows",
        "shows linked to {t} through shared directors",
        "collaborators of {n}",
        "a chain from {t} through {n}",
        "related through the cast network",
        "people who worked with people from {t}",
        "indirectly connected to {t}",
        "{n} and their collaborators' shows",
        "three hops from {t}",
        "shows sharing writers with shows that share actors with {t}",
        "the network around {n}",
    ],
    &[
        "surprise me",
        "something good",
        "mix it up",
        "i don't know what i want",
        "a bit of everything",
        "something funny but smart and short",
        "whatever",
        "help me pick something",
        "what should i watch",
        "anything fun tonight",
        "random stuff",
        "a blend of comedy documentaries and news",
        "something for the whole family maybe animated maybe not",
        "not sure give me options",
        "some variety please",
        "something good to watch",
        "any ideas",
        "all sorts",
        "a mix of light and heavy",
        "pick for me",
    ],
];

/// Clauses for combined queries: (main-request core, trailing modifier), per intent.
const CORE: [&[&str]; 6] = [
    &[
        "{g} shows similar to {t}",
        "something like {t}",
        "shows like {t}",
        "more like {t}",
        "series in the vein of {t}",
        "titles resembling {t}",
    ],
    &[
        "{s} titles within {g}",
        "the {s} branch of {g}",
        "{g} subgenres",
        "niche {s} picks under {g}",
    ],
    &[
        "what's on {p}",
        "titles on my services",
        "shows i can stream",
    ],
    &[
        "picks from my entire watch history",
        "recommendations using my full history",
        "shows based on everything i watched",
    ],
    &[
        "shows with actors who worked with {n}",
        "shows connected to {t} through its cast",
        "collaborators of {n}",
    ],
    &["a mix of everything", "something surprising"],
];
const MODIFIER: [&[&str]; 6] = [
    &[
        "similar to {t}",
        "like {t}",
        "that feel like {t}",
        "resembling {t}",
    ],
    &[
        "in the {s} branch of {g}",
        "within {g} subgenres",
        "narrowed from {g} to {s}",
    ],
    &[
        "on my platforms",
        "available on {p}",
        "that i can stream on {p}",
        "on my subscriptions",
        "on {p} or {p2}",
        "across my streaming apps",
    ],
    &[
        "based on my full watch history",
        "using everything i have watched",
        "from my whole viewing history",
    ],
    &[
        "with actors who worked with {n}",
        "connected through the cast of {t}",
        "two hops from {t}",
    ],
    &["mixing a bit of everything"],
];
/// Intent pairs (main, modifier) that the generator combines.
const PAIRS: [(Intent, Intent); 9] = [
    (Intent::Similar, Intent::CrossPlatform),
    (Intent::GenreHierarchy, Intent::CrossPlatform),
    (Intent::LongHistory, Intent::CrossPlatform),
    (Intent::MultiHop, Intent::CrossPlatform),
    (Intent::LongHistory, Intent::Similar),
    (Intent::Similar, Intent::GenreHierarchy),
    (Intent::MultiHop, Intent::GenreHierarchy),
    (Intent::LongHistory, Intent::GenreHierarchy),
    (Intent::Similar, Intent::MultiHop),
];

fn idx(i: Intent) -> usize {
    INTENTS.iter().position(|&x| x == i).expect("listed")
}

fn fill(rng: &mut Rng, tpl: &str) -> String {
    let t = *rng.pick(TITLES);
    let mut t2 = *rng.pick(TITLES);
    if t2 == t {
        t2 = TITLES[(TITLES.iter().position(|x| *x == t).unwrap_or(0) + 1) % TITLES.len()];
    }
    let p = *rng.pick(PLATFORMS);
    let mut p2 = *rng.pick(PLATFORMS);
    if p2 == p {
        p2 = PLATFORMS[(PLATFORMS.iter().position(|x| *x == p).unwrap_or(0) + 1) % PLATFORMS.len()];
    }
    let k = [50, 200, 500, 1000, 3000, 10000][rng.below(6)].to_string();
    let y = (2005 + rng.below(19)).to_string();
    let (g, sg, n) = (*rng.pick(GENRES), *rng.pick(SUBGENRES), *rng.pick(PEOPLE));
    tpl.replace("{t2}", t2)
        .replace("{t}", t)
        .replace("{g}", g)
        .replace("{s}", sg)
        .replace("{p2}", p2)
        .replace("{p}", p)
        .replace("{n}", n)
        .replace("{k}", &k)
        .replace("{y}", &y)
}

const HIST_ADJ: &[&str] = &[
    "whole",
    "entire",
    "full",
    "complete",
    "long",
    "huge",
    "massive",
    "lifetime",
    "years-long",
    "all-time",
];
const HIST_NOUN: &[&str] = &[
    "watch history",
    "viewing history",
    "watch log",
    "viewing record",
    "history",
    "backlog of watched shows",
    "timeline",
    "viewing data",
    "watch list history",
    "binge history",
];
const HIST_FRAME: &[&str] = &[
    "based on my {a} {h}",
    "use my {a} {h}",
    "go through my {a} {h}",
    "what does my {a} {h} say about my taste",
    "recommend from my {a} {h}",
    "my {h} is {a}, make sense of it",
    "learn my taste from my {a} {h}",
    "take my {a} {h} into account",
    "look at my {a} {h} and suggest something",
    "find patterns in my {a} {h}",
    "from everything in my {a} {h}",
    "consider all {k} titles in my {h}",
    "my {h} goes back to {y}, use all of it",
    "summarise my taste across my {a} {h}",
    "scan my {a} {h}",
];
const MIX_CORE: &[&str] = &[
    "surprise me",
    "pick something for me",
    "i can't decide",
    "no idea what to watch",
    "i'm open to anything",
    "whatever you think",
    "dealer's choice",
    "something random",
    "anything goes",
    "give me a few options",
    "help me choose",
    "not sure what i'm in the mood for",
    "i need ideas",
    "show me a variety",
    "a mixture of things",
    "an assortment of shows",
    "something different",
    "just pick",
    "you choose",
    "i'm undecided",
    "any suggestions",
    "something to watch",
    "what's good",
    "entertain me",
    "a grab bag of shows",
];
const MIX_TAIL: &[&str] = &[
    "",
    "",
    "",
    " tonight",
    " for the weekend",
    " please",
    " with anything",
    " maybe {g} maybe {g2}",
    " a mix of {g} and {g2}",
    " {g} or {g2} or whatever",
    " for a lazy evening",
    " for a rainy day",
    " something light or something serious",
    " any genre",
    " a bit of {g}, a bit of {g2}",
    " all kinds of stuff",
];
const MIX_OPEN: &[&str] = &[
    "",
    "",
    "",
    "honestly ",
    "ok ",
    "hmm ",
    "so ",
    "please ",
    "well ",
];

/// A compositional long-history or mixed query (the two intents with the most open wording).
fn compose(rng: &mut Rng, intent: Intent) -> String {
    if intent == Intent::LongHistory {
        let (f, a, h) = (
            *rng.pick(HIST_FRAME),
            *rng.pick(HIST_ADJ),
            *rng.pick(HIST_NOUN),
        );
        let tpl = f.replace("{a}", a).replace("{h}", h);
        fill(rng, &tpl)
    } else {
        let g2 = *rng.pick(GENRES);
        let (o, c, t) = (
            *rng.pick(MIX_OPEN),
            *rng.pick(MIX_CORE),
            *rng.pick(MIX_TAIL),
        );
        let tpl = format!("{o}{c}{t}").replace("{g2}", g2);
        fill(rng, &tpl)
    }
}

/// One single-intent query.
pub fn single(rng: &mut Rng, intent: Intent) -> Example {
    let lead = if intent == Intent::Mixed {
        ""
    } else {
        *rng.pick(LEADS)
    };
    let body = if matches!(intent, Intent::LongHistory | Intent::Mixed) && rng.chance(0.6) {
        compose(rng, intent)
    } else {
        let tpl = *rng.pick(FULL[idx(intent)]);
        fill(rng, tpl)
    };
    Example {
        text: format!("{lead}{body}"),
        intents: vec![intent],
    }
}

/// One two-intent query: a main request with a modifier clause.
pub fn pair(rng: &mut Rng, main: Intent, modifier: Intent) -> Example {
    let lead = *rng.pick(LEADS);
    let core = *rng.pick(CORE[idx(main)]);
    let m = *rng.pick(MODIFIER[idx(modifier)]);
    Example {
        text: format!("{lead}{} {}", fill(rng, core), fill(rng, m)),
        intents: vec![main, modifier],
    }
}

/// `per_intent` single-intent queries per intent and `per_pair` queries per intent pair,
/// shuffled, reproducible from `seed`.
pub fn generate(seed: u64, per_intent: usize, per_pair: usize) -> Vec<Example> {
    let mut rng = Rng::new(seed);
    let mut out = Vec::with_capacity(per_intent * 6 + per_pair * PAIRS.len());
    for &i in &INTENTS {
        for _ in 0..per_intent {
            out.push(single(&mut rng, i));
        }
    }
    for &(a, b) in &PAIRS {
        for _ in 0..per_pair {
            out.push(pair(&mut rng, a, b));
        }
    }
    rng.shuffle(&mut out);
    out
}

/// Parses the hand-written set: `intent[,intent]<TAB>query` per line; `#` starts a comment.
pub fn parse_tsv(text: &str) -> Result<Vec<Example>, String> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim_end();
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        let (labels, query) = line
            .split_once('\t')
            .ok_or(format!("line {}: expected `intents<TAB>query`", n + 1))?;
        let intents = labels
            .split(',')
            .map(|s| Intent::parse(s).ok_or(format!("line {}: unknown intent {s:?}", n + 1)))
            .collect::<Result<Vec<_>, _>>()?;
        if intents.is_empty() || intents.len() > 2 || query.trim().is_empty() {
            return Err(format!("line {}: need 1-2 intents and a query", n + 1));
        }
        out.push(Example {
            text: query.trim().to_string(),
            intents,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_sum_to_one_and_rank_the_worked_example_correctly() {
        for ex in generate(1, 5, 3) {
            let t = target_distribution(&ex.intents);
            assert!((t.iter().sum::<f32>() - 1.0).abs() < 1e-6, "{ex:?}");
            let counts = label_counts(&ex.intents);
            let total: usize = counts.iter().map(|c| c.1).sum();
            for (c, n) in counts {
                assert!((n as f32 / total as f32 - t[c]).abs() < 1e-6, "{ex:?}");
            }
        }
        let t = target_distribution(&[Intent::Similar, Intent::CrossPlatform]);
        let mut order: Vec<usize> = (0..12).collect();
        order.sort_by(|&a, &b| t[b].total_cmp(&t[a]));
        let top: Vec<&str> = order[..3].iter().map(|&c| SELECTOR_MECHANISMS[c]).collect();
        assert_eq!(top, ["graph_rope", "cross", "edge_featured"]);
    }

    #[test]
    fn every_selector_class_is_a_registered_mechanism() {
        for m in SELECTOR_MECHANISMS {
            assert!(
                crate::attention::MECHANISMS.iter().any(|r| r.name == m),
                "{m}"
            );
        }
        let mut all: Vec<usize> = INTENTS.iter().flat_map(|i| i.mechanisms()).collect();
        all.sort();
        assert_eq!(
            all,
            (0..12).collect::<Vec<_>>(),
            "each class belongs to exactly one intent"
        );
    }

    #[test]
    fn generator_is_reproducible_and_covers_every_intent() {
        let a = generate(7, 10, 2);
        assert_eq!(a, generate(7, 10, 2));
        assert_ne!(a, generate(8, 10, 2));
        for i in INTENTS {
            assert!(a.iter().any(|e| e.intents == [i]));
        }
        assert!(a.iter().all(|e| !e.text.contains('{')), "unfilled slot");
    }

    #[test]
    fn tsv_parser_reads_labels_and_rejects_garbage() {
        let ok = parse_tsv(
            "# c\nsimilar,cross_platform\tshows like Dark on Netflix\nmixed\tsurprise me\n",
        )
        .unwrap();
        assert_eq!(ok.len(), 2);
        assert_eq!(ok[0].intents, [Intent::Similar, Intent::CrossPlatform]);
        assert!(parse_tsv("nope\tquery").is_err());
        assert!(parse_tsv("similar query without tab").is_err());
    }
}
