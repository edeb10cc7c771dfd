//! What a release build has instead of the probe (feature `probe`): a type with no values, so
//! every `if let Some(p) = &self.probe` compiles to nothing and the binary carries neither the
//! probe's file nor its event FIFO.

use crate::registry::Registry;
use std::path::PathBuf;

pub enum Probe {}

impl Probe {
    pub fn from_env(_window: &gtk::ApplicationWindow, _registry: Registry) -> Option<Self> {
        None
    }
    pub fn events_path() -> Option<PathBuf> {
        None
    }
    pub fn event_applied(&self, _at: std::time::Instant) {
        match *self {}
    }
    pub fn topology_asked(&self, _at: std::time::Instant) {
        match *self {}
    }
    pub fn set_listed(&self) {
        match *self {}
    }
    pub fn set_loaded(&self) {
        match *self {}
    }
    pub fn set_plan(&self, _plan: String) {
        match *self {}
    }
    pub fn set_apply_log(&self, _b: gtk::TextBuffer) {
        match *self {}
    }
    pub fn set_plan_path(&self, _p: Option<&std::path::Path>) {
        match *self {}
    }
    pub fn set_preview(&self, _b: gtk::TextBuffer) {
        match *self {}
    }
    pub fn opened(&self, _name: &str, _w: &gtk::Widget) {
        match *self {}
    }
}
