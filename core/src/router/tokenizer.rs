//! Query tokenizer: NFKC-normalised, lower-cased words, each represented by hashed
//! buckets (fastText style): one bucket for the whole word plus one per character
//! n-gram (`min_n..=max_n`) of the word wrapped in boundary markers `<word>`.
//!
//! A word's input vector is the mean of its buckets' embedding rows, so a typo
//! ("simlar") or an unseen title still shares most n-grams with known words.
//! Hashing is 32-bit FNV-1a over UTF-8 bytes with a one-byte domain prefix
//! (`W` for whole words, `G` for n-grams): deterministic on every platform.
//!
//! NFKC comes from the `nfkc` cargo feature (on by default). A build without it
//! (the wasm package, which saves the ~70 KB of Unicode tables) expects callers to
//! pass NFKC-normalised text: the wasm façade applies JavaScript's
//! `String.prototype.normalize("NFKC")` to every query before it reaches the core.

use serde::{Deserialize, Serialize};
#[cfg(feature = "nfkc")]
use unicode_normalization::UnicodeNormalization;

/// Tokenizer hyper-parameters (stored in the model file).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenizerConfig {
    /// Number of hash buckets (= rows of the embedding table).
    pub n_buckets: u32,
    /// Smallest character n-gram (in chars, boundary markers included).
    pub min_n: u8,
    /// Largest character n-gram.
    pub max_n: u8,
    /// Words beyond this many are ignored (the RNN runs once per word).
    pub max_words: u16,
}

impl Default for TokenizerConfig {
    fn default() -> Self {
        TokenizerConfig {
            n_buckets: 2048,
            min_n: 3,
            max_n: 5,
            max_words: 32,
        }
    }
}

/// A tokenized query: `ids[offsets[t]..offsets[t+1]]` are word `t`'s buckets.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tokens {
    pub ids: Vec<u32>,
    pub offsets: Vec<u32>,
}

impl Tokens {
    /// Number of words.
    pub fn len(&self) -> usize {
        self.offsets.len().saturating_sub(1)
    }

    /// True when the query had no words.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Buckets of word `t`.
    pub fn word(&self, t: usize) -> &[u32] {
        &self.ids[self.offsets[t] as usize..self.offsets[t + 1] as usize]
    }

    fn clear(&mut self) {
        self.ids.clear();
        self.offsets.clear();
        self.offsets.push(0);
    }
}

const FNV_OFFSET: u32 = 0x811c_9dc5;
const FNV_PRIME: u32 = 0x0100_0193;

/// 32-bit FNV-1a of `prefix` followed by `bytes`.
pub fn fnv1a(prefix: u8, bytes: &[u8]) -> u32 {
    let mut h = FNV_OFFSET;
    h ^= prefix as u32;
    h = h.wrapping_mul(FNV_PRIME);
    for &b in bytes {
        h ^= b as u32;
        h = h.wrapping_mul(FNV_PRIME);
    }
    h
}

/// Characters kept inside a word. Apostrophes are dropped without splitting
/// ("where's" → "wheres"); every other non-alphanumeric char separates words.
fn classify(c: char) -> CharClass {
    if c.is_alphanumeric() {
        CharClass::Word
    } else if c == '\'' || c == '\u{2019}' || c == '`' {
        CharClass::Skip
    } else {
        CharClass::Sep
    }
}

enum CharClass {
    Word,
    Skip,
    Sep,
}

/// Feed `text`'s characters, NFKC-normalised, to `f`.
///
/// Without the `nfkc` feature the text is taken as already normalised (see the
/// module docs); ASCII is invariant under NFKC either way.
#[inline]
fn for_each_nfkc_char(text: &str, f: impl FnMut(char)) {
    #[cfg(feature = "nfkc")]
    if !text.is_ascii() {
        text.nfkc().for_each(f);
        return;
    }
    text.chars().for_each(f);
}

/// Split `text` into NFKC-normalised lower-case words.
pub fn words(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let push_char = |c: char, cur: &mut String, out: &mut Vec<String>| match classify(c) {
        CharClass::Word => cur.extend(c.to_lowercase()),
        CharClass::Skip => {}
        CharClass::Sep => {
            if !cur.is_empty() {
                out.push(core::mem::take(cur));
            }
        }
    };
    for_each_nfkc_char(text, |c| push_char(c, &mut cur, &mut out));
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// Hashing tokenizer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tokenizer {
    cfg: TokenizerConfig,
}

impl Tokenizer {
    /// A tokenizer; `cfg` must satisfy `n_buckets > 0`, `1 <= min_n <= max_n`,
    /// `max_words > 0` (checked by [`TokenizerConfig::validate`]).
    pub fn new(cfg: TokenizerConfig) -> Self {
        Tokenizer { cfg }
    }

    pub fn config(&self) -> &TokenizerConfig {
        &self.cfg
    }

    /// Append the buckets of one (already normalised) word to `out`.
    pub fn word_buckets(&self, word: &str, out: &mut Vec<u32>) {
        let nb = self.cfg.n_buckets;
        out.push(fnv1a(b'W', word.as_bytes()) % nb);
        // Char boundaries of "<word>" as byte offsets into a small buffer.
        let mut buf = [0u8; 96];
        let wb = word.as_bytes();
        if wb.len() + 2 > buf.len() {
            // Very long "word" (e.g. a pasted URL): whole-word bucket only.
            return;
        }
        buf[0] = b'<';
        buf[1..1 + wb.len()].copy_from_slice(wb);
        buf[1 + wb.len()] = b'>';
        let s = &buf[..wb.len() + 2];
        let mut starts = [0u8; 97];
        let mut n_chars = 0usize;
        for (i, &b) in s.iter().enumerate() {
            // UTF-8 continuation bytes are 10xxxxxx.
            if b & 0xC0 != 0x80 {
                starts[n_chars] = i as u8;
                n_chars += 1;
            }
        }
        starts[n_chars] = s.len() as u8;
        let (lo, hi) = (self.cfg.min_n as usize, self.cfg.max_n as usize);
        for n in lo..=hi {
            if n > n_chars {
                break;
            }
            for i in 0..=n_chars - n {
                let g = &s[starts[i] as usize..starts[i + n] as usize];
                out.push(fnv1a(b'G', g) % nb);
            }
        }
    }

    /// Tokenize into a reusable buffer.
    pub fn tokenize_into(&self, text: &str, out: &mut Tokens) {
        out.clear();
        let mut word = String::new();
        let max = self.cfg.max_words as usize;
        let mut count = 0usize;
        let flush = |word: &mut String, out: &mut Tokens, count: &mut usize| {
            if !word.is_empty() {
                if *count < max {
                    self.word_buckets(word, &mut out.ids);
                    out.offsets.push(out.ids.len() as u32);
                    *count += 1;
                }
                word.clear();
            }
        };
        let feed =
            |c: char, word: &mut String, out: &mut Tokens, count: &mut usize| match classify(c) {
                CharClass::Word => word.extend(c.to_lowercase()),
                CharClass::Skip => {}
                CharClass::Sep => flush(word, out, count),
            };
        for_each_nfkc_char(text, |c| feed(c, &mut word, out, &mut count));
        flush(&mut word, out, &mut count);
    }

    /// Tokenize a query.
    pub fn tokenize(&self, text: &str) -> Tokens {
        let mut t = Tokens::default();
        self.tokenize_into(text, &mut t);
        t
    }

    /// Tokenize a list of already-normalised words (used by training augmentation).
    pub fn tokenize_words<S: AsRef<str>>(&self, ws: &[S], out: &mut Tokens) {
        out.clear();
        for w in ws.iter().take(self.cfg.max_words as usize) {
            self.word_buckets(w.as_ref(), &mut out.ids);
            out.offsets.push(out.ids.len() as u32);
        }
    }
}

impl TokenizerConfig {
    /// Check the configuration; `Err` names the offending field.
    pub fn validate(&self) -> Result<(), String> {
        if self.n_buckets == 0 {
            return Err("n_buckets must be > 0".into());
        }
        if self.min_n == 0 || self.min_n > self.max_n || self.max_n > 16 {
            return Err(format!(
                "n-gram range {}..={} invalid (need 1 <= min_n <= max_n <= 16)",
                self.min_n, self.max_n
            ));
        }
        if self.max_words == 0 {
            return Err("max_words must be > 0".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a_matches_reference_vectors() {
        // Standard FNV-1a 32 test vectors, shifted by our prefix byte: with the
        // prefix as the first byte, fnv1a(b'a', b"") == FNV-1a("a").
        assert_eq!(fnv1a(b'a', b""), 0xe40c_292c);
        assert_eq!(fnv1a(b'f', b"oobar"), 0xbf9c_f968);
    }

    #[test]
    fn words_normalise_case_width_and_punctuation() {
        assert_eq!(
            words("Where's  THE Matrix?!"),
            vec!["wheres", "the", "matrix"]
        );
        // Typographic (U+2019, what phone keyboards and speech-to-text produce) and
        // backtick apostrophes are dropped like ASCII ones, not word breaks.
        assert_eq!(
            words("Where\u{2019}s Schindler`s List"),
            vec!["wheres", "schindlers", "list"]
        );
        let tk = Tokenizer::new(TokenizerConfig::default());
        assert_eq!(
            tk.tokenize("where\u{2019}s it`s on").ids,
            tk.tokenize("where's it's on").ids
        );
        // Full-width letters and the "ﬁ" ligature are NFKC-folded (by the core with
        // the `nfkc` feature, by the caller without it).
        #[cfg(feature = "nfkc")]
        assert_eq!(words("ＭＡＴＲＩＸ ﬁlm"), vec!["matrix", "film"]);
        assert_eq!(words("Amélie, 2001"), vec!["amélie", "2001"]);
        assert!(words("  ?? ").is_empty());
    }

    #[test]
    fn tokenize_agrees_with_words_and_ngram_counts() {
        let tk = Tokenizer::new(TokenizerConfig::default());
        let t = tk.tokenize("Movies like Heat");
        assert_eq!(t.len(), 3);
        // "<like>" has 6 chars: 4 trigrams + 3 four-grams + 2 five-grams + word = 10.
        assert_eq!(t.word(1).len(), 10);
        let mut t2 = Tokens::default();
        tk.tokenize_words(&words("Movies like Heat"), &mut t2);
        assert_eq!(t, t2);
        assert!(t.ids.iter().all(|&b| b < 2048));
    }

    #[test]
    fn typo_shares_most_ngrams() {
        let tk = Tokenizer::new(TokenizerConfig {
            n_buckets: 1 << 20,
            ..Default::default()
        });
        let a = tk.tokenize("similar");
        let b = tk.tokenize("similiar");
        let sa: std::collections::HashSet<_> = a.ids.iter().collect();
        let shared = b.ids.iter().filter(|x| sa.contains(x)).count();
        assert!(shared >= 8, "shared {shared}");
        let c = tk.tokenize("weekend");
        let other = c.ids.iter().filter(|x| sa.contains(x)).count();
        assert!(other <= 1);
    }

    #[test]
    fn non_ascii_ngrams_respect_char_boundaries_and_max_words() {
        let tk = Tokenizer::new(TokenizerConfig {
            max_words: 2,
            ..Default::default()
        });
        let t = tk.tokenize("été à la plage");
        assert_eq!(t.len(), 2);
        // "<été>" is 5 chars: 3 + 2 + 1 n-grams + word = 7.
        assert_eq!(t.word(0).len(), 7);
        let long = "x".repeat(500);
        assert_eq!(tk.tokenize(&long).word(0).len(), 1);
    }
}
