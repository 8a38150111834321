//! The life of a simulated client process: one OS thread, many incarnations.
//!
//! The thread waits for its first turn, then runs incarnations of its program until the
//! program ends. A crash unwinds the incarnation (dropping its `Vfs` and `Meta`, as the
//! death of a process drops its memory); the thread then waits for its restart and
//! begins a new incarnation. A real panic is a violation and stops the run.

use crate::world::{Crashed, Stopped, World};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

/// Runs `incarnation` over and over until it returns, restarting it after crashes.
pub fn run(world: Arc<World>, me: usize, mut incarnation: impl FnMut(&Arc<World>)) {
    world.enter(me);
    loop {
        match catch_unwind(AssertUnwindSafe(|| incarnation(&world))) {
            Ok(()) => break,
            Err(p) if p.is::<Crashed>() => {
                if !world.await_restart(me) {
                    break;
                }
            }
            Err(p) if p.is::<Stopped>() => break,
            Err(p) => {
                world.fail_panic(me, &*p);
                break;
            }
        }
    }
    world.finish(me);
}
