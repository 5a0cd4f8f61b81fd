//! A synchronous `tools/call` that carries a `progressToken` (MCP's
//! `_meta.progressToken`) hears its task's progress as
//! `notifications/progress`: the worker's reports, as `tasks/get` shows
//! them, and first, for a call no worker serves yet, that it waits for one.
//! Hosts show them, and clients that reset their request timeout on
//! progress (the TypeScript SDK's `resetTimeoutOnProgress`) keep waiting
//! for a long tool that reports.
use rmcp::model::{ProgressNotificationParam, ProgressToken};

use crate::scheduler::views::TaskView;

/// What one call has told its client so far.
pub struct Progress {
    token: ProgressToken,
    /// The index of the last worker report sent.
    last: u64,
    /// The largest `progress` sent: MCP asks that it rise with each one.
    sent: f64,
}

impl Progress {
    pub fn new(token: ProgressToken) -> Self {
        Self {
            token,
            last: 0,
            sent: f64::NEG_INFINITY,
        }
    }

    /// The index of the last worker report sent (0: none yet).
    pub fn last(&self) -> u64 {
        self.last
    }

    /// The notice that the call waits for a worker (`note`, the ack's
    /// unserved notice), as the first notification.
    pub fn waiting(&mut self, note: &str) -> ProgressNotificationParam {
        self.sent = 0.0;
        ProgressNotificationParam::new(self.token.clone(), 0.0)
            .with_message(note.trim().trim_start_matches("Note: "))
    }

    /// The notification of `view`'s latest report, if it is new. A report
    /// whose count does not rise (a new attempt starting over) is sent
    /// with the count it had reached, so the numbers keep rising.
    pub fn report(&mut self, view: &TaskView) -> Option<ProgressNotificationParam> {
        let p = view.progress.as_ref().filter(|p| p.index > self.last)?;
        self.last = p.index;
        let progress = if p.progress > self.sent {
            p.progress
        } else {
            self.sent
        };
        self.sent = progress;
        let mut n = ProgressNotificationParam::new(self.token.clone(), progress).with_message(
            crate::text::progress_status(p.progress, p.total, &p.message),
        );
        if p.total > 0.0 {
            n = n.with_total(p.total);
        }
        Some(n)
    }
}

#[cfg(test)]
mod tests {
    use rmcp::model::NumberOrString;

    use super::*;

    fn view(index: u64, progress: f64, total: f64) -> TaskView {
        let mut v = crate::agents::tests::task(crate::model::TaskState::Running, None);
        let mut p = (*crate::agents::tests::progress(progress, total, "page")).clone();
        p.index = index;
        v.progress = Some(std::sync::Arc::new(p));
        v
    }

    #[test]
    fn each_new_report_is_sent_once_and_the_count_only_rises() {
        let mut p = Progress::new(ProgressToken(NumberOrString::Number(7)));
        let first = p.report(&view(1, 3.0, 5.0)).expect("a new report");
        assert_eq!((first.progress, first.total), (3.0, Some(5.0)));
        assert!(first.message.unwrap().contains("3/5"));
        assert!(p.report(&view(1, 3.0, 5.0)).is_none(), "sent twice");
        // A second attempt starting over: the count sent does not fall.
        let again = p.report(&view(2, 1.0, 5.0)).unwrap();
        assert_eq!(again.progress, 3.0);
    }
}
