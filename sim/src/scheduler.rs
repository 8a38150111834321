//! The baton scheduler's bookkeeping: virtual time and the state of every client slot.
//!
//! Each simulated client is one OS thread, but only the thread holding the baton runs.
//! A client gives the baton up at every yield point (every call into the simulated
//! metadata engine or object store, and while thinking between operations), saying when
//! it wants to run again: the call's completion time. The scheduler then hands the baton
//! to the parked client with the earliest wake time and moves virtual time there. The
//! blocking and waking itself is in [`crate::world`]; this module only decides.

/// What a client slot is doing.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Status {
    /// Not started yet, or finished: never picked.
    Absent,
    /// Parked, runnable from `wake_at`.
    Parked,
    /// Holds the baton.
    Running,
}

/// One client slot.
#[derive(Clone, Debug)]
pub struct Slot {
    pub status: Status,
    pub wake_at: u64,
    /// Crashed: the thread is parked until its restart at `wake_at`.
    pub down: bool,
    /// Killed while parked (a system crash): unwind as soon as it is woken.
    pub doomed: bool,
    /// Started at least one incarnation (a system crash kills it).
    pub started: bool,
}

/// Virtual time and the client slots.
#[derive(Debug)]
pub struct Scheduler {
    /// Virtual time in nanoseconds since the start of the run.
    pub now: u64,
    pub running: Option<usize>,
    pub slots: Vec<Slot>,
    /// Times the baton moved to a different thread.
    pub switches: u64,
}

impl Scheduler {
    pub fn new(slots: usize) -> Scheduler {
        let slot = Slot {
            status: Status::Absent,
            wake_at: 0,
            down: false,
            doomed: false,
            started: false,
        };
        Scheduler {
            now: 0,
            running: None,
            slots: vec![slot; slots],
            switches: 0,
        }
    }

    /// The parked client with the earliest wake time (ties: the lowest number).
    pub fn pick(&self) -> Option<usize> {
        self.slots
            .iter()
            .enumerate()
            .filter(|(_, s)| s.status == Status::Parked)
            .min_by_key(|(i, s)| (s.wake_at, *i))
            .map(|(i, _)| i)
    }

    /// Parks `me` until `wake_at`.
    pub fn park(&mut self, me: usize, wake_at: u64) {
        let s = &mut self.slots[me];
        s.status = Status::Parked;
        s.wake_at = wake_at;
        if self.running == Some(me) {
            self.running = None;
        }
    }

    /// Gives the baton to `next`, advancing time to its wake time.
    pub fn run(&mut self, next: usize) {
        let s = &mut self.slots[next];
        self.now = self.now.max(s.wake_at);
        s.status = Status::Running;
        if self.running != Some(next) {
            self.switches += 1;
        }
        self.running = Some(next);
    }

    /// Clients that have not finished (parked or running).
    pub fn live(&self) -> usize {
        self.slots
            .iter()
            .filter(|s| s.status != Status::Absent)
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn earliest_wake_runs_first_and_time_only_moves_forward() {
        let mut s = Scheduler::new(3);
        s.park(0, 50);
        s.park(1, 20);
        s.park(2, 20);
        assert_eq!(s.pick(), Some(1));
        s.run(1);
        assert_eq!(s.now, 20);
        s.park(1, 10); // a wake time in the past runs now
        assert_eq!(s.pick(), Some(1));
        s.run(1);
        assert_eq!(s.now, 20);
        s.slots[1].status = Status::Absent;
        assert_eq!(s.pick(), Some(2));
        assert_eq!(s.live(), 2);
    }
}
