//! Viewer interactions and their signal strengths.
//!
//! Strengths come from [`PersonalizeConfig`]; the default ordering is
//! `watch_complete (1.0) > rating 5★ (0.8) > watch_start (0.5) > search_click (0.3) > 0 > skip (−0.6)`.
//! Ratings map linearly: `strength = rating_max_strength · (stars − 3) / 2`, so
//! 1★ → −0.8 (strongly negative), 3★ → 0, 5★ → +0.8.

use core::fmt;
use core::str::FromStr;

use serde::{Deserialize, Serialize};

use super::{PersonalizeConfig, PersonalizeError};

/// The interaction types, without payload. Parses from the spec's snake_case names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SignalType {
    SearchClick,
    WatchStart,
    WatchComplete,
    Rating,
    Skip,
}

impl SignalType {
    pub const ALL: [SignalType; 5] = [
        SignalType::SearchClick,
        SignalType::WatchStart,
        SignalType::WatchComplete,
        SignalType::Rating,
        SignalType::Skip,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            SignalType::SearchClick => "search_click",
            SignalType::WatchStart => "watch_start",
            SignalType::WatchComplete => "watch_complete",
            SignalType::Rating => "rating",
            SignalType::Skip => "skip",
        }
    }
}

impl fmt::Display for SignalType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SignalType {
    type Err = PersonalizeError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        SignalType::ALL
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or_else(|| PersonalizeError::UnknownInteractionType {
                found: s.to_string(),
            })
    }
}

/// One interaction, with its payload (stars for a rating).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InteractionKind {
    SearchClick,
    WatchStart,
    /// Watched more than `watch_complete_threshold` (90 %) of the title.
    WatchComplete,
    /// Explicit rating, 1..=5 stars (fractions allowed).
    Rating {
        stars: f32,
    },
    Skip,
}

fn check_stars(stars: f32) -> Result<(), PersonalizeError> {
    if stars.is_finite() && (1.0..=5.0).contains(&stars) {
        Ok(())
    } else {
        Err(PersonalizeError::RatingOutOfRange { value: stars })
    }
}

impl InteractionKind {
    /// A rating; rejects values outside 1..=5 and NaN/inf.
    pub fn rating(stars: f32) -> Result<Self, PersonalizeError> {
        check_stars(stars)?;
        Ok(InteractionKind::Rating { stars })
    }

    /// Parse a type name; `rating` requires `stars`, the others reject it.
    pub fn parse(kind: &str, stars: Option<f32>) -> Result<Self, PersonalizeError> {
        let t: SignalType = kind.parse()?;
        match (t, stars) {
            (SignalType::Rating, Some(s)) => Self::rating(s),
            (SignalType::Rating, None) => Err(PersonalizeError::MissingRating),
            (_, Some(_)) => Err(PersonalizeError::UnexpectedRating { kind: t }),
            (SignalType::SearchClick, None) => Ok(InteractionKind::SearchClick),
            (SignalType::WatchStart, None) => Ok(InteractionKind::WatchStart),
            (SignalType::WatchComplete, None) => Ok(InteractionKind::WatchComplete),
            (SignalType::Skip, None) => Ok(InteractionKind::Skip),
        }
    }

    /// `watch_complete` when more than `cfg.watch_complete_threshold` was watched,
    /// else `watch_start`. `fraction` must be in [0, 1].
    pub fn from_watch_progress(
        fraction: f32,
        cfg: &PersonalizeConfig,
    ) -> Result<Self, PersonalizeError> {
        if !(fraction.is_finite() && (0.0..=1.0).contains(&fraction)) {
            return Err(PersonalizeError::OutOfRange {
                what: "watched fraction",
                value: fraction as f64,
                range: "0..=1",
            });
        }
        Ok(if fraction > cfg.watch_complete_threshold {
            InteractionKind::WatchComplete
        } else {
            InteractionKind::WatchStart
        })
    }

    pub fn signal_type(&self) -> SignalType {
        match self {
            InteractionKind::SearchClick => SignalType::SearchClick,
            InteractionKind::WatchStart => SignalType::WatchStart,
            InteractionKind::WatchComplete => SignalType::WatchComplete,
            InteractionKind::Rating { .. } => SignalType::Rating,
            InteractionKind::Skip => SignalType::Skip,
        }
    }

    /// Reject a rating built by hand with bad stars.
    pub fn validate(&self) -> Result<(), PersonalizeError> {
        match *self {
            InteractionKind::Rating { stars } => check_stars(stars),
            _ => Ok(()),
        }
    }

    /// Signal strength under `cfg` (call [`validate`](Self::validate) first for hand-built ratings).
    pub fn strength(&self, cfg: &PersonalizeConfig) -> f32 {
        match *self {
            InteractionKind::SearchClick => cfg.search_click_strength,
            InteractionKind::WatchStart => cfg.watch_start_strength,
            InteractionKind::WatchComplete => cfg.watch_complete_strength,
            InteractionKind::Rating { stars } => cfg.rating_max_strength * (stars - 3.0) / 2.0,
            InteractionKind::Skip => cfg.skip_strength,
        }
    }
}

/// The device an interaction happened on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Device {
    #[default]
    Tv,
    Mobile,
    Tablet,
    Desktop,
    Web,
    Other,
}

impl FromStr for Device {
    type Err = PersonalizeError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "tv" => Device::Tv,
            "mobile" => Device::Mobile,
            "tablet" => Device::Tablet,
            "desktop" => Device::Desktop,
            "web" => Device::Web,
            "other" => Device::Other,
            _ => {
                return Err(PersonalizeError::UnknownDevice {
                    found: s.to_string(),
                })
            }
        })
    }
}

/// When / where / in which mood an interaction happened.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Default)]
pub struct InteractionContext {
    /// 0..=23, local time.
    pub hour_of_day: u8,
    /// 0 = Monday ..= 6 = Sunday.
    pub day_of_week: u8,
    pub device: Device,
    /// Free-form mood indicators ("cozy", "tense", ...).
    pub moods: Vec<String>,
}

impl InteractionContext {
    pub fn validate(&self) -> Result<(), PersonalizeError> {
        if self.hour_of_day > 23 {
            return Err(PersonalizeError::OutOfRange {
                what: "context.hour_of_day",
                value: self.hour_of_day as f64,
                range: "0..=23",
            });
        }
        if self.day_of_week > 6 {
            return Err(PersonalizeError::OutOfRange {
                what: "context.day_of_week",
                value: self.day_of_week as f64,
                range: "0..=6",
            });
        }
        Ok(())
    }
}

/// One viewer interaction with a title.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ViewerInteraction {
    pub kind: InteractionKind,
    pub content_id: String,
    pub context: InteractionContext,
}

impl ViewerInteraction {
    pub fn new(kind: InteractionKind, content_id: impl Into<String>) -> Self {
        ViewerInteraction {
            kind,
            content_id: content_id.into(),
            context: InteractionContext::default(),
        }
    }

    pub fn validate(&self) -> Result<(), PersonalizeError> {
        self.kind.validate()?;
        self.context.validate()
    }

    /// Signal strength under `cfg`.
    pub fn strength(&self, cfg: &PersonalizeConfig) -> f32 {
        self.kind.strength(cfg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_strengths_follow_the_spec_ordering() {
        let c = PersonalizeConfig::default();
        let s = |k: InteractionKind| k.strength(&c);
        let complete = s(InteractionKind::WatchComplete);
        let five = s(InteractionKind::rating(5.0).unwrap());
        let start = s(InteractionKind::WatchStart);
        let click = s(InteractionKind::SearchClick);
        let skip = s(InteractionKind::Skip);
        assert!(complete > five && five > start && start > click && click > 0.0 && 0.0 > skip);
        // Ratings: 1 strongly negative, 3 neutral, 5 positive, monotone.
        let r: Vec<f32> = (1..=5)
            .map(|x| s(InteractionKind::rating(x as f32).unwrap()))
            .collect();
        assert!(r.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(r[2], 0.0);
        assert!(r[0] < skip, "1 star ({}) is stronger than a skip", r[0]);
        assert!(r[4] > 0.0);
    }

    #[test]
    fn parsing_accepts_spec_names_and_rejects_the_rest() {
        for t in SignalType::ALL {
            assert_eq!(t.as_str().parse::<SignalType>().unwrap(), t);
        }
        assert_eq!(
            InteractionKind::parse("watch_complete", None).unwrap(),
            InteractionKind::WatchComplete
        );
        assert_eq!(
            InteractionKind::parse("rating", Some(4.0)).unwrap(),
            InteractionKind::Rating { stars: 4.0 }
        );
        let e = InteractionKind::parse("watch_finished", None).unwrap_err();
        assert!(e.to_string().contains("watch_finished"), "{e}");
        assert!(matches!(
            InteractionKind::parse("rating", None),
            Err(PersonalizeError::MissingRating)
        ));
        assert!(matches!(
            InteractionKind::parse("skip", Some(2.0)),
            Err(PersonalizeError::UnexpectedRating { .. })
        ));
        for bad in [0.0, 0.99, 5.01, 6.0, -1.0, f32::NAN, f32::INFINITY] {
            assert!(
                matches!(
                    InteractionKind::parse("rating", Some(bad)),
                    Err(PersonalizeError::RatingOutOfRange { .. })
                ),
                "{bad} accepted"
            );
        }
        assert!(InteractionKind::Rating { stars: 9.0 }.validate().is_err());
        assert_eq!("tablet".parse::<Device>().unwrap(), Device::Tablet);
        assert!("toaster".parse::<Device>().is_err());
    }

    #[test]
    fn watch_progress_threshold() {
        let c = PersonalizeConfig::default();
        assert_eq!(
            InteractionKind::from_watch_progress(0.95, &c).unwrap(),
            InteractionKind::WatchComplete
        );
        assert_eq!(
            InteractionKind::from_watch_progress(0.9, &c).unwrap(),
            InteractionKind::WatchStart
        );
        assert!(InteractionKind::from_watch_progress(1.5, &c).is_err());
        assert!(InteractionKind::from_watch_progress(f32::NAN, &c).is_err());
    }

    #[test]
    fn context_ranges_are_checked() {
        let mut i = ViewerInteraction::new(InteractionKind::Skip, "tt1");
        i.validate().unwrap();
        i.context.hour_of_day = 24;
        assert!(i.validate().is_err());
        i.context.hour_of_day = 3;
        i.context.day_of_week = 7;
        assert!(i.validate().is_err());
    }
}
