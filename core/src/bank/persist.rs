//! A whole bank as bytes, in the checksummed [`crate::codec`] envelope
//! (magic `SRBK`, format version [`BANK_FORMAT_VERSION`]).
//!
//! Payload, little-endian:
//! `u32` length of the metadata · metadata (MessagePack, named fields: config,
//! next id, counters) · `u64` length of the records · records (MessagePack,
//! positional: slot ids, one optional record per slot — no embeddings) · `u64`
//! slot count · embeddings as raw `f32` (slot-major, `dim` per slot, tombstones
//! included because the graph walks through them) · `u8` graph flag (0 none,
//! 1 graph, 2 graph with a twin table) · graph links and twins (see `Hnsw::write`). The embeddings are 4 bytes per value, not a
//! MessagePack float array (5 bytes each plus array headers).
//!
//! Reading checks the envelope (magic, version, length, CRC-32), then every
//! field: config validity, finite unit embeddings, unique ids, confidences in
//! range, non-empty results, graph links in bounds, no trailing bytes. A
//! failure is a [`BankError`]; nothing is half-loaded because the bank is only
//! built once everything has been checked.

use super::hnsw::{dot, Hnsw, Reader};
use super::pattern::PatternRecord;
use super::{BankConfig, BankCounters, BankError, PatternId, ReasoningBank};
use serde::{Deserialize, Serialize};

/// Envelope magic.
pub const BANK_MAGIC: [u8; 4] = *b"SRBK";
/// Format version this build writes and reads.
pub const BANK_FORMAT_VERSION: u16 = 1;

#[derive(Serialize, Deserialize)]
struct Meta {
    config: BankConfig,
    next_id: PatternId,
    counters: BankCounters,
}

#[derive(Serialize)]
struct MetaRef<'a> {
    config: &'a BankConfig,
    next_id: PatternId,
    counters: &'a BankCounters,
}

/// Slot ids and records, encoded positionally (MessagePack arrays without
/// field names: ~40 bytes per record plus 8 per result at most).
type Records = (Vec<PatternId>, Vec<Option<PatternRecord>>);

impl ReasoningBank {
    /// Serialize the whole bank (patterns, embeddings, graph, counters, config).
    pub fn to_bytes(&self) -> Vec<u8> {
        let meta = rmp_serde::to_vec_named(&MetaRef {
            config: &self.config,
            next_id: self.next_id,
            counters: &self.counters,
        })
        .expect("MessagePack encoding of an in-memory value cannot fail");
        let records = rmp_serde::to_vec(&(&self.slot_ids, &self.slots))
            .expect("MessagePack encoding of an in-memory value cannot fail");
        let mut p = Vec::with_capacity(meta.len() + records.len() + self.vectors.len() * 4 + 64);
        p.extend_from_slice(&(meta.len() as u32).to_le_bytes());
        p.extend_from_slice(&meta);
        p.extend_from_slice(&(records.len() as u64).to_le_bytes());
        p.extend_from_slice(&records);
        p.extend_from_slice(&(self.slots.len() as u64).to_le_bytes());
        for &x in &self.vectors {
            p.extend_from_slice(&x.to_le_bytes());
        }
        match &self.graph {
            // 2: the graph carries a twin table (identical vectors); a bank
            // without twins is written exactly as before (1).
            Some(g) => {
                p.push(if g.has_twins() { 2 } else { 1 });
                g.write(&mut p);
            }
            None => p.push(0),
        }
        crate::codec::seal(BANK_MAGIC, BANK_FORMAT_VERSION, &p)
    }

    /// Restore a bank written by [`ReasoningBank::to_bytes`]; a corrupt or
    /// inconsistent file is an error (see the module docs).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, BankError> {
        let payload = crate::codec::open("pattern bank", BANK_MAGIC, BANK_FORMAT_VERSION, bytes)?;
        let corrupt = BankError::Corrupt;
        let mut r = Reader { buf: payload };
        let meta_len = r.u32().map_err(corrupt)? as usize;
        let meta: Meta = rmp_serde::from_slice(r.bytes(meta_len).map_err(corrupt)?)
            .map_err(|e| BankError::Corrupt(format!("metadata: {e}")))?;
        meta.config.validate()?;
        let rec_len = r.u64().map_err(corrupt)? as usize;
        let (slot_ids, slots): Records = rmp_serde::from_slice(r.bytes(rec_len).map_err(corrupt)?)
            .map_err(|e| BankError::Corrupt(format!("records: {e}")))?;
        let dim = meta.config.dim;
        let n = r.u64().map_err(corrupt)? as usize;
        if n != slots.len() {
            return Err(corrupt(format!("{n} embeddings for {} slots", slots.len())));
        }
        let vectors = r
            .f32s(
                n.checked_mul(dim)
                    .ok_or_else(|| corrupt("size overflows".into()))?,
            )
            .map_err(corrupt)?;
        for (i, v) in vectors.chunks_exact(dim).enumerate() {
            let norm2 = dot(v, v);
            if !(norm2.is_finite() && (norm2 - 1.0).abs() < 1e-3) {
                return Err(corrupt(format!(
                    "embedding of slot {i} is not a unit vector"
                )));
            }
        }
        if slot_ids.len() != n
            || slot_ids.windows(2).any(|w| w[0] >= w[1])
            || slot_ids.last().is_some_and(|&l| l >= meta.next_id)
        {
            return Err(corrupt(
                "slot ids are not strictly increasing below the next id".into(),
            ));
        }
        let mut live = 0;
        for (i, rec) in slots.iter().enumerate() {
            let Some(rec) = rec else { continue };
            live += 1;
            if rec.id != slot_ids[i] {
                return Err(corrupt(format!(
                    "pattern id {} stored in the slot of id {}",
                    rec.id, slot_ids[i]
                )));
            }
            if !(rec.confidence.is_finite() && (0.0..=1.0).contains(&rec.confidence)) {
                return Err(corrupt(format!(
                    "pattern {} confidence {}",
                    rec.id, rec.confidence
                )));
            }
            if rec.results.is_empty() {
                return Err(corrupt(format!("pattern {} has no results", rec.id)));
            }
            super::check_context(&rec.context)
                .map_err(|e| corrupt(format!("pattern {}: {e}", rec.id)))?;
        }
        let graph = match r.u8().map_err(corrupt)? {
            0 => None,
            1 => Some(Hnsw::read(&mut r, dim, n, false).map_err(corrupt)?),
            2 => Some(Hnsw::read(&mut r, dim, n, true).map_err(corrupt)?),
            f => return Err(corrupt(format!("graph flag {f}"))),
        };
        if !r.buf.is_empty() {
            return Err(corrupt(format!("{} trailing bytes", r.buf.len())));
        }
        let mut bank = ReasoningBank {
            config: meta.config,
            vectors,
            slots,
            slot_ids,
            owner_slots: Default::default(),
            aggregated_slots: Vec::new(),
            graph,
            next_id: meta.next_id,
            live,
            counters: meta.counters,
        };
        bank.rebuild_side_indexes();
        if bank.graph.is_none() && bank.live >= bank.config.exact_scan_below {
            bank.rebuild_index();
        }
        Ok(bank)
    }
}
