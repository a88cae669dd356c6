//! BERT uncased tokenizer: basic tokenization (clean text, CJK isolation, accent stripping,
//! lower-casing, whitespace + punctuation splitting) followed by greedy longest-match-first
//! WordPiece over `vocab.txt`.
//!
//! The rules follow the `BertNormalizer` + `BertPreTokenizer` + `WordPiece` pipeline that
//! all-MiniLM-L6-v2's `tokenizer.json` configures, including its treatment of the special
//! tokens (`[CLS]`, `[SEP]`, ...) written literally in the input text: they are matched on the
//! raw text (case-sensitive, before normalization) and map straight to their ids.
//! Unicode categories come from the `unicode_categories` crate, the same tables the reference
//! implementation uses, so characters assigned in recent Unicode versions are classified the
//! same way as there.

use std::collections::HashMap;

use unicode_categories::UnicodeCategories;
use unicode_normalization::UnicodeNormalization;

use crate::EmbedError;

/// Prefix that marks a WordPiece continuation piece.
pub const CONTINUATION_PREFIX: &str = "##";
/// Words longer than this many characters become a single `[UNK]`.
pub const MAX_INPUT_CHARS_PER_WORD: usize = 100;

/// The special tokens of the BERT vocabulary, matched literally in the raw text.
const SPECIAL_TOKENS: [&str; 5] = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"];

/// Options of the basic (pre-WordPiece) tokenizer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BasicOptions {
    /// Remove control characters and map every whitespace character to a plain space.
    pub clean_text: bool,
    /// Put spaces around CJK ideographs so each becomes its own word.
    pub handle_chinese_chars: bool,
    /// NFD-decompose and drop non-spacing marks.
    pub strip_accents: bool,
    /// Lower-case every character.
    pub lowercase: bool,
}

impl Default for BasicOptions {
    fn default() -> Self {
        BasicOptions {
            clean_text: true,
            handle_chinese_chars: true,
            strip_accents: true,
            lowercase: true,
        }
    }
}

/// Whitespace as BERT sees it: tab/newline/CR plus Unicode `White_Space`.
pub fn is_bert_whitespace(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r') || c.is_whitespace()
}

/// Control characters removed by text cleaning: categories Cc, Cf and Co, except tab/newline/CR
/// (which count as whitespace).
pub fn is_bert_control(c: char) -> bool {
    if matches!(c, '\t' | '\n' | '\r') {
        return false;
    }
    c.is_other()
}

/// Punctuation that is split off as its own token: every ASCII punctuation character
/// (including symbols such as `$`, `+`, `^`, `|`) plus Unicode categories P*.
pub fn is_bert_punctuation(c: char) -> bool {
    c.is_ascii_punctuation() || c.is_punctuation()
}

/// CJK Unified Ideographs blocks (and their extensions / compatibility blocks). Hangul, Hiragana
/// and Katakana are not included: those scripts separate words with spaces.
pub fn is_cjk_ideograph(c: char) -> bool {
    matches!(c as u32,
        0x4E00..=0x9FFF
        | 0x3400..=0x4DBF
        | 0x20000..=0x2A6DF
        | 0x2A700..=0x2B73F
        | 0x2B740..=0x2B81F
        | 0x2B920..=0x2CEAF
        | 0xF900..=0xFAFF
        | 0x2F800..=0x2FA1F)
}

/// Normalizes one piece of text (no special tokens inside) per `opts`.
pub fn normalize(text: &str, opts: &BasicOptions) -> String {
    let mut s: String = if opts.clean_text {
        text.chars()
            .filter(|&c| !(c == '\0' || c == '\u{FFFD}' || is_bert_control(c)))
            .map(|c| if is_bert_whitespace(c) { ' ' } else { c })
            .collect()
    } else {
        text.to_owned()
    };
    if opts.handle_chinese_chars && s.chars().any(is_cjk_ideograph) {
        let mut spaced = String::with_capacity(s.len() + 8);
        for c in s.chars() {
            if is_cjk_ideograph(c) {
                spaced.push(' ');
                spaced.push(c);
                spaced.push(' ');
            } else {
                spaced.push(c);
            }
        }
        s = spaced;
    }
    if opts.strip_accents {
        s = s.nfd().filter(|c| !c.is_mark_nonspacing()).collect();
    }
    if opts.lowercase {
        // Character by character (no context-dependent rules such as Greek final sigma).
        s = s.chars().flat_map(char::to_lowercase).collect();
    }
    s
}

/// Splits normalized text into words: whitespace separates (and is dropped), each punctuation
/// character becomes a word of its own.
pub fn pre_tokenize(text: &str) -> Vec<&str> {
    let mut words = Vec::new();
    for chunk in text.split(char::is_whitespace) {
        let mut start = 0;
        for (i, c) in chunk.char_indices() {
            if is_bert_punctuation(c) {
                if start < i {
                    words.push(&chunk[start..i]);
                }
                let end = i + c.len_utf8();
                words.push(&chunk[i..end]);
                start = end;
            }
        }
        if start < chunk.len() {
            words.push(&chunk[start..]);
        }
    }
    words
}

/// Basic tokenization of a piece of text: normalization followed by pre-tokenization.
pub fn basic_tokenize(text: &str, opts: &BasicOptions) -> Vec<String> {
    let normalized = normalize(text, opts);
    pre_tokenize(&normalized)
        .into_iter()
        .map(str::to_owned)
        .collect()
}

/// A WordPiece vocabulary: token string to id.
#[derive(Debug, Clone)]
pub struct Vocab {
    ids: HashMap<String, u32>,
    tokens: Vec<String>,
}

impl Vocab {
    /// Parses `vocab.txt` content: one token per line, the id is the 0-based line number.
    /// Duplicate tokens, blank lines or fewer than 1 token are rejected.
    pub fn from_text(text: &str) -> Result<Vocab, EmbedError> {
        let mut ids = HashMap::new();
        let mut tokens = Vec::new();
        for (line_no, line) in text.lines().enumerate() {
            let token = line.strip_suffix('\r').unwrap_or(line);
            if token.is_empty() {
                return Err(EmbedError::Vocab(format!(
                    "empty token on line {}",
                    line_no + 1
                )));
            }
            let id = u32::try_from(tokens.len())
                .map_err(|_| EmbedError::Vocab("more than u32::MAX tokens".into()))?;
            if ids.insert(token.to_owned(), id).is_some() {
                return Err(EmbedError::Vocab(format!(
                    "duplicate token {token:?} on line {}",
                    line_no + 1
                )));
            }
            tokens.push(token.to_owned());
        }
        if tokens.is_empty() {
            return Err(EmbedError::Vocab("vocabulary is empty".into()));
        }
        Ok(Vocab { ids, tokens })
    }

    /// Builds a vocabulary from tokens in id order.
    pub fn from_tokens<S: AsRef<str>>(tokens: &[S]) -> Result<Vocab, EmbedError> {
        let joined: Vec<&str> = tokens.iter().map(AsRef::as_ref).collect();
        Vocab::from_text(&joined.join("\n"))
    }

    /// Number of tokens.
    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    /// True when the vocabulary holds no token (never the case for a parsed vocabulary).
    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    /// Id of a token string.
    pub fn id(&self, token: &str) -> Option<u32> {
        self.ids.get(token).copied()
    }

    /// Token string of an id.
    pub fn token(&self, id: u32) -> Option<&str> {
        self.tokens.get(id as usize).map(String::as_str)
    }
}

/// Greedy longest-match-first WordPiece of one word, appending ids to `out`. A word with more
/// than [`MAX_INPUT_CHARS_PER_WORD`] characters, or with a suffix no vocabulary piece matches,
/// becomes the single id `unk`.
pub fn wordpiece(word: &str, vocab: &Vocab, unk: u32, out: &mut Vec<u32>) {
    // Byte offsets of every character boundary, including the end.
    let bounds: Vec<usize> = word
        .char_indices()
        .map(|(i, _)| i)
        .chain(std::iter::once(word.len()))
        .collect();
    let n_chars = bounds.len() - 1;
    if n_chars == 0 {
        return;
    }
    if n_chars > MAX_INPUT_CHARS_PER_WORD {
        out.push(unk);
        return;
    }
    let first = out.len();
    let mut candidate = String::with_capacity(word.len() + CONTINUATION_PREFIX.len());
    let mut start = 0;
    while start < n_chars {
        let mut found = None;
        let mut end = n_chars;
        while end > start {
            candidate.clear();
            if start > 0 {
                candidate.push_str(CONTINUATION_PREFIX);
            }
            candidate.push_str(&word[bounds[start]..bounds[end]]);
            if let Some(id) = vocab.id(&candidate) {
                found = Some(id);
                break;
            }
            end -= 1;
        }
        match found {
            Some(id) => {
                out.push(id);
                start = end;
            }
            None => {
                out.truncate(first);
                out.push(unk);
                return;
            }
        }
    }
}

/// The full BERT tokenizer: special-token extraction, basic tokenization, WordPiece, and the
/// `[CLS] ... [SEP]` template with truncation.
#[derive(Debug, Clone)]
pub struct BertTokenizer {
    vocab: Vocab,
    opts: BasicOptions,
    unk: u32,
    cls: u32,
    sep: u32,
    /// Special tokens present in the vocabulary, as (text, id).
    specials: Vec<(&'static str, u32)>,
    max_len: usize,
}

impl BertTokenizer {
    /// Creates a tokenizer. The vocabulary must contain `[UNK]`, `[CLS]` and `[SEP]`;
    /// `max_len` (total length including `[CLS]`/`[SEP]`) must be at least 2.
    pub fn new(vocab: Vocab, opts: BasicOptions, max_len: usize) -> Result<Self, EmbedError> {
        let need = |t: &str| {
            vocab
                .id(t)
                .ok_or_else(|| EmbedError::Vocab(format!("vocabulary lacks {t}")))
        };
        let unk = need("[UNK]")?;
        let cls = need("[CLS]")?;
        let sep = need("[SEP]")?;
        if max_len < 2 {
            return Err(EmbedError::Config(format!(
                "max sequence length {max_len} leaves no room for [CLS] and [SEP]"
            )));
        }
        let specials = SPECIAL_TOKENS
            .iter()
            .filter_map(|&t| vocab.id(t).map(|id| (t, id)))
            .collect();
        Ok(BertTokenizer {
            vocab,
            opts,
            unk,
            cls,
            sep,
            specials,
            max_len,
        })
    }

    /// The vocabulary.
    pub fn vocab(&self) -> &Vocab {
        &self.vocab
    }

    /// Maximum sequence length, `[CLS]` and `[SEP]` included.
    pub fn max_len(&self) -> usize {
        self.max_len
    }

    /// Word-piece ids of `text` without `[CLS]`/`[SEP]` and without truncation.
    pub fn encode_words(&self, text: &str) -> Vec<u32> {
        let mut out = Vec::new();
        let mut rest = text;
        while !rest.is_empty() {
            match self.next_special(rest) {
                Some((pos, tok, id)) => {
                    self.encode_plain(&rest[..pos], &mut out);
                    out.push(id);
                    rest = &rest[pos + tok.len()..];
                }
                None => {
                    self.encode_plain(rest, &mut out);
                    break;
                }
            }
        }
        out
    }

    /// `[CLS] pieces [SEP]`, with the pieces truncated so the total is at most `max_len`.
    pub fn encode(&self, text: &str) -> Vec<u32> {
        let mut pieces = self.encode_words(text);
        pieces.truncate(self.max_len - 2);
        let mut ids = Vec::with_capacity(pieces.len() + 2);
        ids.push(self.cls);
        ids.extend_from_slice(&pieces);
        ids.push(self.sep);
        ids
    }

    /// Leftmost occurrence of a special token in `text` (longest one on ties), as
    /// (byte position, token text, id).
    fn next_special(&self, text: &str) -> Option<(usize, &'static str, u32)> {
        for (pos, _) in text.match_indices('[') {
            let tail = &text[pos..];
            let best = self
                .specials
                .iter()
                .filter(|(t, _)| tail.starts_with(t))
                .max_by_key(|(t, _)| t.len());
            if let Some(&(t, id)) = best {
                return Some((pos, t, id));
            }
        }
        None
    }

    fn encode_plain(&self, text: &str, out: &mut Vec<u32>) {
        if text.is_empty() {
            return;
        }
        let normalized = normalize(text, &self.opts);
        for word in pre_tokenize(&normalized) {
            wordpiece(word, &self.vocab, self.unk, out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toy_vocab() -> Vocab {
        Vocab::from_tokens(&[
            "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "un", "##aff", "##able", "un##", "aff",
            "##a", "##ff", "play", "##ing", "##s", "!", "hello", "world", ",", "cafe", "中", "国",
            "$", "x",
        ])
        .unwrap()
    }

    fn ids(v: &Vocab, toks: &[&str]) -> Vec<u32> {
        toks.iter().map(|t| v.id(t).unwrap()).collect()
    }

    #[test]
    fn wordpiece_greedy_longest_match() {
        let v = toy_vocab();
        let unk = v.id("[UNK]").unwrap();
        let mut out = Vec::new();
        wordpiece("unaffable", &v, unk, &mut out);
        // Longest first: "un" then "##aff" (not "##a" + "##ff"), then "##able".
        assert_eq!(out, ids(&v, &["un", "##aff", "##able"]));
        out.clear();
        wordpiece("playings", &v, unk, &mut out);
        assert_eq!(out, ids(&v, &["play", "##ing", "##s"]));
        out.clear();
        // "aff" is a word-initial piece; "##aff" must not be used at the start.
        wordpiece("affa", &v, unk, &mut out);
        assert_eq!(out, ids(&v, &["aff", "##a"]));
    }

    #[test]
    fn wordpiece_unknown_suffix_makes_whole_word_unk() {
        let v = toy_vocab();
        let unk = v.id("[UNK]").unwrap();
        let mut out = vec![42];
        wordpiece("unaffz", &v, unk, &mut out);
        assert_eq!(out, vec![42, unk], "partial pieces must be dropped");
        out.clear();
        wordpiece("zzz", &v, unk, &mut out);
        assert_eq!(out, vec![unk]);
    }

    #[test]
    fn wordpiece_long_word_is_unk() {
        let v = Vocab::from_tokens(&["[UNK]", "a", "##a"]).unwrap();
        let mut out = Vec::new();
        wordpiece(&"a".repeat(100), &v, 0, &mut out);
        assert_eq!(out.len(), 100);
        assert!(out[1..].iter().all(|&i| i == 2));
        out.clear();
        wordpiece(&"a".repeat(101), &v, 0, &mut out);
        assert_eq!(out, vec![0]);
        // The limit counts characters, not bytes.
        out.clear();
        let v2 = Vocab::from_tokens(&["[UNK]", "é", "##é"]).unwrap();
        wordpiece(&"é".repeat(60), &v2, 0, &mut out);
        assert_eq!(out.len(), 60);
    }

    #[test]
    fn punctuation_split_and_whitespace() {
        let w = basic_tokenize("Hello,world!!  a-b\t$5 x^2", &BasicOptions::default());
        assert_eq!(
            w,
            vec!["hello", ",", "world", "!", "!", "a", "-", "b", "$", "5", "x", "^", "2"]
        );
        // Unicode punctuation (Pd, Pi/Pf, Po) is split; a symbol outside ASCII (So) is not.
        let w = basic_tokenize("a—b «c» d¿e ©f", &BasicOptions::default());
        assert_eq!(w, vec!["a", "—", "b", "«", "c", "»", "d", "¿", "e", "©f"]);
    }

    #[test]
    fn accents_lowercase_and_cleaning() {
        let o = BasicOptions::default();
        assert_eq!(normalize("Café ÑANDÚ Ångström", &o), "cafe nandu angstrom");
        // Decomposed input gives the same result.
        assert_eq!(normalize("Cafe\u{301}", &o), "cafe");
        // Control characters dropped, whitespace variants mapped to a space.
        assert_eq!(normalize("a\u{0}b\u{7}c\u{200B}d\u{FFFD}e", &o), "abcde");
        assert_eq!(normalize("a\tb\nc\u{3000}d\u{A0}e", &o), "a b c d e");
        // Without stripping/lowercasing nothing changes.
        let keep = BasicOptions {
            strip_accents: false,
            lowercase: false,
            ..o
        };
        assert_eq!(normalize("Café", &keep), "Café");
    }

    #[test]
    fn cjk_ideographs_become_single_words_but_kana_does_not() {
        let w = basic_tokenize("我爱北京abc カタカナ 한국어", &BasicOptions::default());
        // Hangul syllables are NFD-decomposed into jamo by accent stripping (nothing is dropped).
        let hangul: String = "한국어".nfd().collect();
        assert_eq!(hangul.chars().count(), 8);
        assert_eq!(
            w,
            vec!["我", "爱", "北", "京", "abc", "カタカナ", hangul.as_str()]
        );
    }

    #[test]
    fn full_encode_with_specials_and_truncation() {
        let v = toy_vocab();
        let t = BertTokenizer::new(v.clone(), BasicOptions::default(), 6).unwrap();
        assert_eq!(t.encode(""), ids(&v, &["[CLS]", "[SEP]"]));
        assert_eq!(
            t.encode("Hello, CAFÉ!"),
            ids(&v, &["[CLS]", "hello", ",", "cafe", "!", "[SEP]"])
        );
        // Truncated to 6 in total.
        assert_eq!(
            t.encode("hello world hello world hello"),
            ids(&v, &["[CLS]", "hello", "world", "hello", "world", "[SEP]"])
        );
        // Literal special tokens are kept (case-sensitive); lower-case ones are just text.
        let t = BertTokenizer::new(v.clone(), BasicOptions::default(), 64).unwrap();
        assert_eq!(
            t.encode("x[MASK]x [unk]"),
            ids(
                &v,
                &["[CLS]", "x", "[MASK]", "x", "[UNK]", "[UNK]", "[UNK]", "[SEP]"]
            )
        );
        assert_eq!(t.encode("中国"), ids(&v, &["[CLS]", "中", "国", "[SEP]"]));
    }

    #[test]
    fn vocab_rejects_bad_input() {
        assert!(Vocab::from_text("").is_err());
        assert!(Vocab::from_text("a\n\nb").is_err());
        assert!(Vocab::from_text("a\nb\na").is_err());
        let v = Vocab::from_text("a\r\nb\r\n").unwrap();
        assert_eq!(v.id("b"), Some(1));
        assert_eq!(v.token(0), Some("a"));
        let no_cls = Vocab::from_tokens(&["[UNK]", "[SEP]"]).unwrap();
        assert!(BertTokenizer::new(no_cls, BasicOptions::default(), 8).is_err());
        assert!(BertTokenizer::new(toy_vocab(), BasicOptions::default(), 1).is_err());
    }
}
