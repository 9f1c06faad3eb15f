//! The walled garden's host names on the control task: the DNS answers the kernel hands over
//! are learned (`crate::garden`) and written to the kernel at once, expired addresses removed
//! at every poll tick, the names taken from a reloaded configuration. Side effects: writes
//! `GARDEN_LEARNED` and the `CONFIG` word that turns the copying of answers on.

use aya::maps::{MapData, RingBuf};
use hotspotd_common::GardenAnswerHeader;
use tokio::time::Instant;

use super::Control;
use crate::{
    config::Config,
    garden::{Change, GardenView},
};

/// Answers learned per wake-up at most, so a flood of them cannot keep the task from the
/// API and the polls; the rest wait in the ring for the next turn.
const ANSWERS_PER_TURN: usize = 4_096;

impl Control {
    /// At start: takes over what a previous run learned (kept for the TTL floor while its
    /// name is still configured) and turns the copying of answers on or off.
    pub(super) fn start_garden(&mut self) {
        let now = Instant::now();
        let changes: Vec<Change> = match self.kernel.garden_learned() {
            Ok(left) => left
                .iter()
                .filter_map(|(addr, value)| self.garden.adopt(*addr, value, now))
                .collect(),
            Err(error) => {
                tracing::warn!(error = %crate::text::chain(&error), "cannot read the walled garden's learned addresses");
                Vec::new()
            }
        };
        self.write_garden(&changes);
        self.switch_garden();
    }

    /// Learns the answers waiting in the ring; returns whether some are left for another turn.
    pub(super) fn learn_garden(&mut self, ring: &mut RingBuf<MapData>) -> bool {
        let now = Instant::now();
        let mut changes = Vec::new();
        for _ in 0..ANSWERS_PER_TURN {
            let Some(record) = ring.next() else {
                self.write_garden(&changes);
                return false;
            };
            changes.extend(self.garden.learn(message_of(&record), now));
        }
        self.write_garden(&changes);
        true
    }

    /// Removes the learned addresses whose time ran out.
    pub(super) fn expire_garden(&mut self) {
        let changes = self.garden.expire(Instant::now());
        self.write_garden(&changes);
    }

    /// Takes the garden's names and TTL bounds from a reloaded configuration.
    pub(super) fn reconfigure_garden(&mut self, config: &Config) {
        let changes = self.garden.configure(config);
        self.write_garden(&changes);
        self.switch_garden();
    }

    /// `GET /v1/garden`.
    pub(super) fn garden_view(&self) -> GardenView {
        let bytes = self.kernel.garden_bytes().unwrap_or_else(|error| {
            tracing::warn!(error = %crate::text::chain(&error), "cannot read the walled garden's byte counters");
            Vec::new()
        });
        GardenView {
            names: self.garden.view(Instant::now(), &bytes),
            learned: self.garden.learned_count(),
            capacity: hotspotd_common::MAX_GARDEN_LEARNED,
            counts: self.garden.counts(),
        }
    }

    fn switch_garden(&mut self) {
        if let Err(error) = self.kernel.set_garden_names(self.garden.has_names()) {
            tracing::error!(error = %crate::text::chain(&error), "cannot turn the learning of the walled garden's host names on or off");
        }
    }

    fn write_garden(&mut self, changes: &[Change]) {
        if changes.is_empty() {
            return;
        }
        if let Err(error) = self.kernel.apply_garden(changes) {
            tracing::error!(error = %crate::text::chain(&error), "cannot write the walled garden's learned addresses");
        }
    }
}

/// The DNS message of a ring record: the bytes its header announces, as far as present.
fn message_of(record: &[u8]) -> &[u8] {
    let header_len = size_of::<GardenAnswerHeader>();
    let Some(header) = record.get(..4) else {
        return &[];
    };
    let len = u32::from_ne_bytes([header[0], header[1], header[2], header[3]]) as usize;
    let end = header_len.saturating_add(len).min(record.len());
    record.get(header_len..end).unwrap_or(&[])
}
