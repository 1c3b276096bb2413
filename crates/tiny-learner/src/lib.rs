//! tiny-learner: the Learner, its callbacks and schedules (filled in by the tiny-learner issue).
