//! Offset guessing: where the running kernel keeps each field of
//! `struct sock` that the probe reads. `solver` is the pure state machine
//! that asks for connections and reads the probe's copies of them;
//! `driver` makes those connections and arms the probe.
pub mod driver;
pub mod solver;

pub use driver::{GuessRun, GuessSwitches};
pub use solver::{FIELDS, Field, Guessed};
