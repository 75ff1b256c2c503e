//! Property tests of the pattern engine: agreement with a reference matcher, and the bound on
//! its work and time (one test binary, so it links once).

mod bound;
mod reference;
